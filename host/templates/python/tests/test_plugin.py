"""The plugin's logic, natively: no wasm, no bindings."""

from {{module}} import {{Type}}
from wafer_guest import AggregationKind, Row, ValueType

plugin = {{Type}}()


def test_average_is_sum_over_count():
    assert plugin.compute(Row([2, 29.0, 25.0, "view"])) == [2, 14.5, 25.0, "view"]


def test_empty_window_gives_zero_average_and_nulls():
    out = plugin.compute(Row([0, 0.0, None, None]))
    assert out == [0, 0.0, None, None]
    assert isinstance(out[1], float)


def test_descriptor_lines_up_aggregations_and_features():
    d = plugin.describe()
    assert (d.name, d.entity_key) == ("{{name}}", "user_id")
    assert [(w.name, w.length_ms) for w in d.windows] == [("10m", 600_000)]
    assert [(a.kind, a.field) for a in d.aggregations] == [
        (AggregationKind.COUNT, None),
        (AggregationKind.SUM, "value"),
        (AggregationKind.MAX, "value"),
        (AggregationKind.LAST, "action"),
    ]
    assert [f.kind for f in d.features] == [
        ValueType.INT64,
        ValueType.FLOAT64,
        ValueType.FLOAT64,
        ValueType.TEXT,
    ]
