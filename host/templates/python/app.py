"""Component entry module (componentize-py's app): exports {{Type}} over wit/."""

from {{module}} import {{Type}}
from wafer_guest import export_plugin

WitWorld = export_plugin({{Type}}())
