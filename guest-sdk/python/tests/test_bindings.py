"""The SDK against the real bindings componentize-py generates from wit/.

Natively, without building a component: needs the pinned toolchain in
.toolchains/python-venv (scripts/build-plugins-py.sh install); skipped without it.
"""

import pathlib
import subprocess
import sys

import cases
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
COMPONENTIZE_PY = ROOT / ".toolchains/python-venv/bin/componentize-py"


@pytest.fixture(scope="module")
def bindings(tmp_path_factory):
    if not COMPONENTIZE_PY.exists():
        pytest.skip(f"{COMPONENTIZE_PY} missing: run scripts/build-plugins-py.sh install")
    out = tmp_path_factory.mktemp("bindings")
    subprocess.run(
        [str(COMPONENTIZE_PY), "-d", str(ROOT / "wit"), "-w", "feature-plugin", "bindings", str(out)],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        import componentize_py_types
        import wit_world
        from wit_world.imports import log as wit_log
        from wit_world.imports import types as wit

        yield wit, wit_log, wit_world, componentize_py_types
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] in ("wit_world", "componentize_py_types")]:
            del sys.modules[name]


@pytest.mark.parametrize("check", cases.CHECKS, ids=lambda c: c.__name__)
def test_glue(bindings, check):
    check(bindings[0])


@pytest.mark.parametrize("values, message", cases.REJECTS)
def test_rejects(bindings, values, message):
    cases.check_rejects(bindings[0], values, message)


def test_export_plugin_implements_the_world(bindings, monkeypatch):
    wit, wit_log, wit_world, types_module = bindings
    from wafer_guest import export_plugin, log

    lines = []
    monkeypatch.setattr(wit_log, "emit", lambda level, message, fields: lines.append((level, message, fields)))
    try:
        world_class = export_plugin(cases.Echo)
        assert wit_world.WitWorld in world_class.__mro__
        world = world_class()
        described = world.describe()
        assert isinstance(described, wit.Descriptor) and described.name == "p"
        columns = world.compute(cases.batch(wit))
        assert [type(c.data) for c in columns] == [
            wit.ColumnData_Int64,
            wit.ColumnData_Float64,
            wit.ColumnData_Text,
            wit.ColumnData_Boolean,
        ]

        # Errors become the world's `err` case, with the reason.
        failing = export_plugin(cases.Returns([1, 2.0, "x"]))()
        with pytest.raises(types_module.Err) as e:
            failing.compute(cases.batch(wit))
        assert "compute returned 3 values" in e.value.value

        # Logging reaches the WIT import with the WIT level.
        log.warn("from the plugin", rows=3)
        assert lines == [(wit_log.Level.WARN, "from the plugin", [("rows", "3")])]
    finally:
        log.set_sink(None)
