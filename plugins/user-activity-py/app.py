"""Component entry module (componentize-py's app): exports UserActivity over wit/."""

from user_activity import UserActivity
from wafer_guest import export_plugin

WitWorld = export_plugin(UserActivity())
