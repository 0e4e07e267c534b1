"""Checks of the SDK's glue, shared by the stand-in and the real-bindings tests.

Each check takes ``wit``, a module with the generated ``types`` classes.
"""

import pytest

from wafer_guest import AggregationKind, Descriptor, FeaturePlugin, Row, ValueType
from wafer_guest.glue import PluginError, compute_columns, rows_of, to_wit_descriptor


def every_type_descriptor():
    return (
        Descriptor("p", "1.2.3", "user_id")
        .input("action", ValueType.TEXT)
        .input("value", ValueType.FLOAT64)
        .input("flag", ValueType.BOOLEAN)
        .input("n", ValueType.INT64)
        .sliding_window("1h", 3_600_000)
        .aggregate("1h", AggregationKind.COUNT)
        .aggregate("1h", AggregationKind.SUM, "value")
        .aggregate("1h", AggregationKind.MEAN, "value")
        .aggregate("1h", AggregationKind.MIN, "n")
        .aggregate("1h", AggregationKind.MAX, "n")
        .aggregate("1h", AggregationKind.DISTINCT_COUNT, "action")
        .aggregate("1h", AggregationKind.FIRST, "flag")
        .aggregate("1h", AggregationKind.LAST, "action")
        .feature("i", ValueType.INT64)
        .feature("f", ValueType.FLOAT64)
        .feature("t", ValueType.TEXT)
        .feature("b", ValueType.BOOLEAN)
    )


class Echo(FeaturePlugin):
    """Returns [count, mean, last, first] as (int, float, text, bool) features."""

    def describe(self):
        return every_type_descriptor()

    def compute(self, row):
        return [row.int(0), row.float(2), row.text(7), row.bool(6)]


class Returns(FeaturePlugin):
    def __init__(self, values):
        self.values = values

    def describe(self):
        return every_type_descriptor()

    def compute(self, row):
        return self.values


def batch(wit):
    """Three rows; text dictionary-encoded, nulls in MEAN, FIRST and LAST."""
    col = wit.Column
    return wit.Batch(
        rows=3,
        columns=[
            col(wit.ColumnData_Int64([3, 0, 1]), []),
            col(wit.ColumnData_Float64([6.0, 0.0, 2.5]), []),
            col(wit.ColumnData_Float64([2.0, 0.0, 2.5]), [True, False, True]),
            col(wit.ColumnData_Float64([1.0, 0.0, 2.5]), [True, False, True]),
            col(wit.ColumnData_Float64([3.0, 0.0, 2.5]), [True, False, True]),
            col(wit.ColumnData_Int64([2, 0, 1]), []),
            col(wit.ColumnData_Boolean([True, False, False]), [True, False, True]),
            col(wit.ColumnData_Text(wit.TextColumn(["buy", "view"], [1, 0, 1])), [True, False, True]),
        ],
    )


def check_descriptor(wit):
    d = to_wit_descriptor(every_type_descriptor(), wit)
    assert isinstance(d, wit.Descriptor)
    assert (d.name, d.version, d.entity_key) == ("p", "1.2.3", "user_id")
    assert [(i.name, i.kind) for i in d.inputs] == [
        ("action", wit.ValueType.TEXT),
        ("value", wit.ValueType.FLOAT64),
        ("flag", wit.ValueType.BOOLEAN),
        ("n", wit.ValueType.INT64),
    ]
    assert [(w.name, w.kind, w.length_ms) for w in d.windows] == [
        ("1h", wit.WindowKind.SLIDING, 3_600_000)
    ]
    assert [(a.kind, a.field) for a in d.aggregations] == [
        (wit.AggregationKind.COUNT, None),
        (wit.AggregationKind.SUM, "value"),
        (wit.AggregationKind.MEAN, "value"),
        (wit.AggregationKind.MIN, "n"),
        (wit.AggregationKind.MAX, "n"),
        (wit.AggregationKind.DISTINCT_COUNT, "action"),
        (wit.AggregationKind.FIRST, "flag"),
        (wit.AggregationKind.LAST, "action"),
    ]
    assert [(f.name, f.kind) for f in d.features] == [
        ("i", wit.ValueType.INT64),
        ("f", wit.ValueType.FLOAT64),
        ("t", wit.ValueType.TEXT),
        ("b", wit.ValueType.BOOLEAN),
    ]


def check_rows(wit):
    rows = rows_of(batch(wit), wit)
    assert [list(r) for r in rows] == [
        [3, 6.0, 2.0, 1.0, 3.0, 2, True, "view"],
        [0, 0.0, None, None, None, 0, None, None],
        [1, 2.5, 2.5, 2.5, 2.5, 1, False, "view"],
    ]


def check_columns(wit):
    plugin = Echo()
    cols = compute_columns(plugin, plugin.describe(), batch(wit), wit)
    i, f, t, b = cols
    assert i == wit.Column(wit.ColumnData_Int64([3, 0, 1]), [])
    assert f == wit.Column(wit.ColumnData_Float64([2.0, 0.0, 2.5]), [True, False, True])
    # Text is dictionary-encoded, each distinct string once; a null row has code 0.
    assert t == wit.Column(wit.ColumnData_Text(wit.TextColumn(["view"], [0, 0, 0])), [True, False, True])
    assert b == wit.Column(wit.ColumnData_Boolean([True, False, False]), [True, False, True])


def check_empty_batch(wit):
    plugin = Echo()
    empty = wit.Batch(rows=0, columns=[wit.Column(wit.ColumnData_Int64([]), []) for _ in range(8)])
    cols = compute_columns(plugin, plugin.describe(), empty, wit)
    assert [len(c.data.value.codes if isinstance(c.data, wit.ColumnData_Text) else c.data.value) for c in cols] == [0] * 4
    assert all(c.valid == [] for c in cols)


def check_ints_widen_to_float(wit):
    plugin = Returns([1, 7, "x", True])
    cols = compute_columns(plugin, plugin.describe(), batch(wit), wit)
    assert cols[1].data.value == [7.0, 7.0, 7.0]
    assert all(isinstance(v, float) for v in cols[1].data.value)


# What compute returns for every row, and the error that must fail the batch.
REJECTS = [
    ([1, 2.0, "x"], "row 0: compute returned 3 values, the descriptor declares 4 features"),
    (None, "row 0: compute returned None"),
    ([1.5, 2.0, "x", True], "row 0, feature i: value 1.5 (float) does not match the declared type int64"),
    ([True, 2.0, "x", True], "feature i: value True (bool) does not match the declared type int64"),
    ([2**63, 2.0, "x", True], "feature i: value 9223372036854775808 does not fit in int64"),
    ([1, "2", "x", True], "feature f: value '2' (str) does not match the declared type float64"),
    ([1, 2.0, 3, True], "feature t: value 3 (int) does not match the declared type text"),
    ([1, 2.0, "x", 1], "feature b: value 1 (int) does not match the declared type boolean"),
]


def check_rejects(wit, values, message):
    plugin = Returns(values)
    with pytest.raises(PluginError) as e:
        compute_columns(plugin, plugin.describe(), batch(wit), wit)
    assert message in str(e.value), str(e.value)


def check_plugin_exception_names_the_row(wit):
    class Fails(FeaturePlugin):
        def describe(self):
            return every_type_descriptor()

        def compute(self, row: Row):
            if row.int(0) == 0:
                raise ValueError("no events")
            return [1, 1.0, "a", True]

    plugin = Fails()
    with pytest.raises(PluginError) as e:
        compute_columns(plugin, plugin.describe(), batch(wit), wit)
    assert str(e.value) == "row 1: ValueError: no events"


def check_window_kinds(wit):
    d = to_wit_descriptor(
        Descriptor("p", "1", "k")
        .tumbling_window("1m", 60_000, grace_ms=5_000)
        .hopping_window("1h", 3_600_000, 60_000, early_results=True)
        .session_window("s", 1_800_000, 3_600_000, grace_ms=1_000)
        .aggregate("1m", AggregationKind.VARIANCE, "v")
        .aggregate("1h", AggregationKind.STDDEV, "v")
        .events("s", "v", 50)
        .quantile("1h", "v", 0.9),
        wit,
    )
    assert [
        (w.kind, w.length_ms, w.hop_ms, w.gap_ms, w.grace_ms, w.early_results) for w in d.windows
    ] == [
        (wit.WindowKind.TUMBLING, 60_000, None, None, 5_000, False),
        (wit.WindowKind.HOPPING, 3_600_000, 60_000, None, 0, True),
        (wit.WindowKind.SESSION, 3_600_000, None, 1_800_000, 1_000, False),
    ]
    assert [(a.kind, a.quantile, a.max_events) for a in d.aggregations] == [
        (wit.AggregationKind.VARIANCE, None, None),
        (wit.AggregationKind.STDDEV, None, None),
        (wit.AggregationKind.EVENTS, None, 50),
        (wit.AggregationKind.APPROX_QUANTILE, 0.9, None),
    ]
    assert d.aggregations[2].field == "v"
    assert d.aggregations[3].field == "v"


def check_event_lists(wit):
    column = wit.Column(
        wit.ColumnData_EventList(
            wit.EventListColumn(
                offsets=[0, 2, 2, 3],
                times=[10, 11, 20],
                values=wit.EventValues_Text(wit.TextColumn(["a", "b"], [1, 0, 1])),
            )
        ),
        [],
    )
    rows = rows_of(wit.Batch(rows=3, columns=[column]), wit)
    assert [r.get(0) for r in rows] == [[(10, "b"), (11, "a")], [], [(20, "b")]]


CHECKS = [
    check_window_kinds,
    check_event_lists,
    check_descriptor,
    check_rows,
    check_columns,
    check_empty_batch,
    check_ints_widen_to_float,
    check_plugin_exception_names_the_row,
]
