"""The descriptor builder, rows and logging, natively."""

import pytest

from wafer_guest import AggregationKind, Descriptor, Row, ValueType, log


def test_builder_keeps_declaration_order():
    d = (
        Descriptor("p", "1", "k")
        .input("a", ValueType.TEXT)
        .sliding_window("5m", 300_000)
        .aggregate("5m", AggregationKind.COUNT)
        .aggregate("5m", AggregationKind.LAST, "a")
        .feature("n", ValueType.INT64)
        .feature("last", ValueType.TEXT)
    )
    assert [a.kind for a in d.aggregations] == [AggregationKind.COUNT, AggregationKind.LAST]
    assert d.aggregations[0].field is None
    assert [f.name for f in d.features] == ["n", "last"]
    assert d.windows[0].length_ms == 300_000


def test_builder_rejects_wrong_kinds():
    with pytest.raises(TypeError):
        Descriptor("p", "1", "k").input("a", "text")
    with pytest.raises(TypeError):
        Descriptor("p", "1", "k").aggregate("w", "count")
    with pytest.raises(ValueError):
        Descriptor("p", "1", "k").sliding_window("w", -1)


def test_quantile_is_checked_and_declared():
    d = Descriptor("p", "1", "k").quantile("w", "v", 0.5).quantile("w", "v", 1)
    assert [(a.kind, a.field, a.quantile) for a in d.aggregations] == [
        (AggregationKind.APPROX_QUANTILE, "v", 0.5),
        (AggregationKind.APPROX_QUANTILE, "v", 1.0),
    ]
    for bad in [-0.1, 1.5, float("nan"), True, "0.5"]:
        with pytest.raises(ValueError):
            Descriptor("p", "1", "k").quantile("w", "v", bad)


def test_row_accessors_check_types():
    row = Row([3, 2.5, "x", True, None])
    assert (row.int(0), row.float(0), row.text(0), row.bool(0)) == (3, 3.0, None, None)
    assert (row.int(1), row.float(1)) == (None, 2.5)
    assert (row.text(2), row.int(2)) == ("x", None)
    # A bool is not an int here, unlike in Python's numeric tower.
    assert (row.bool(3), row.int(3), row.float(3)) == (True, None, None)
    assert (row.get(4), row.int(4), row.text(4)) == (None, None, None)
    assert (row.get(99), row.int(-1)) == (None, None)
    assert len(row) == 5 and list(row)[:2] == [3, 2.5]


def test_log_goes_to_stderr_natively(capsys):
    log.info("hello", rows=3)
    log.emit(log.Level.WARN, "odd", [("user", "u1")])
    assert capsys.readouterr().err == "[INFO] hello rows=3\n[WARN] odd user=u1\n"


def test_log_goes_to_the_sink_when_set():
    lines = []
    log.set_sink(lambda level, message, fields: lines.append((level, message, fields)))
    try:
        log.error("bad", code=7)
        log.debug("quiet")
    finally:
        log.set_sink(None)
    assert lines == [(log.Level.ERROR, "bad", [("code", "7")]), (log.Level.DEBUG, "quiet", [])]
