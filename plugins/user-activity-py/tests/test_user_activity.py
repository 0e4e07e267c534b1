"""The plugin's logic, natively: no wasm, no bindings."""

from user_activity import HOUR_MS, UserActivity
from wafer_guest import AggregationKind, Row, ValueType

plugin = UserActivity()


def test_average_is_sum_over_count():
    assert plugin.compute(Row([4, 2, 10.0, "buy"])) == [4, 2, 2.5, "buy"]


def test_empty_window_gives_zero_average_and_null_action():
    out = plugin.compute(Row([0, 0, 0.0, None]))
    assert out == [0, 0, 0.0, None]
    assert isinstance(out[2], float)


def test_null_aggregates_are_treated_as_empty():
    assert plugin.compute(Row([None, None, None, None])) == [0, 0, 0.0, None]


def test_descriptor_matches_the_rust_plugin():
    d = plugin.describe()
    assert (d.name, d.version, d.entity_key) == ("user-activity", "0.1.0", "user_id")
    assert [(i.name, i.kind) for i in d.inputs] == [
        ("action", ValueType.TEXT),
        ("value", ValueType.FLOAT64),
    ]
    assert [(w.name, w.length_ms) for w in d.windows] == [("1h", HOUR_MS)]
    assert HOUR_MS == 3_600_000
    assert [(a.window, a.kind, a.field) for a in d.aggregations] == [
        ("1h", AggregationKind.COUNT, None),
        ("1h", AggregationKind.DISTINCT_COUNT, "action"),
        ("1h", AggregationKind.SUM, "value"),
        ("1h", AggregationKind.LAST, "action"),
    ]
    assert [(f.name, f.kind) for f in d.features] == [
        ("event_count_1h", ValueType.INT64),
        ("unique_actions_1h", ValueType.INT64),
        ("avg_value_1h", ValueType.FLOAT64),
        ("last_action", ValueType.TEXT),
    ]
