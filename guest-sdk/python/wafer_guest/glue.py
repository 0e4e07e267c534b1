"""Conversion between the WIT columns and the rows a plugin's logic sees.

Used by :func:`wafer_guest.export_plugin`; plugin authors do not call it.
Every function takes ``wit``, the ``types`` module that componentize-py
generates from the repository's ``wit/`` (``wit_world.imports.types``), so the
conversion is testable natively with a stand-in module.
"""

from __future__ import annotations

from .describe import AggregationKind, Descriptor, ValueType
from .value import INT64_MAX, INT64_MIN, Row


class PluginError(Exception):
    """An error that fails the whole batch; the host reports its message."""


def to_wit_descriptor(d: Descriptor, wit):
    """The descriptor in WIT form."""
    return wit.Descriptor(
        name=d.name,
        version=d.version,
        entity_key=d.entity_key,
        inputs=[wit.InputField(name=i.name, kind=_wit_type(i.kind, wit)) for i in d.inputs],
        windows=[
            wit.WindowSpec(
                name=w.name,
                kind=getattr(wit.WindowKind, w.kind.name),
                length_ms=w.length_ms,
                hop_ms=w.hop_ms,
                gap_ms=w.gap_ms,
                grace_ms=w.grace_ms,
                early_results=w.early_results,
            )
            for w in d.windows
        ],
        aggregations=[
            wit.AggregationSpec(
                window=a.window,
                kind=_wit_aggregation(a.kind, wit),
                field=a.field,
                quantile=a.quantile,
                max_events=a.max_events,
            )
            for a in d.aggregations
        ],
        features=[wit.FeatureSpec(name=f.name, kind=_wit_type(f.kind, wit)) for f in d.features],
    )


def rows_of(batch, wit) -> list[Row]:
    """The rows of a WIT batch: text decoded from its dictionary, nulls as ``None``."""
    n = batch.rows
    columns = [_cells(c, n, wit) for c in batch.columns]
    if not columns:
        return [Row(()) for _ in range(n)]
    return [Row(cells) for cells in zip(*columns)]


def compute_columns(plugin, descriptor: Descriptor, batch, wit) -> list:
    """Runs ``plugin.compute`` on every row of ``batch`` and returns the feature columns.

    Raises :class:`PluginError` (naming the row and feature) when the plugin
    raises, returns the wrong number of values, or a value of the wrong type.
    """
    features = descriptor.features
    builders = [_ColumnBuilder(f.name, f.kind) for f in features]
    for r, row in enumerate(rows_of(batch, wit)):
        try:
            out = plugin.compute(row)
        except Exception as e:  # the plugin's own failure fails the batch, with the reason
            raise PluginError(f"row {r}: {type(e).__name__}: {e}") from e
        if out is None or len(out) != len(features):
            got = "None" if out is None else f"{len(out)} values"
            raise PluginError(
                f"row {r}: compute returned {got}, the descriptor declares {len(features)} features"
            )
        for value, builder in zip(out, builders):
            err = builder.push(value)
            if err is not None:
                raise PluginError(f"row {r}, feature {builder.name}: {err}")
    return [b.finish(wit) for b in builders]


def _cells(column, n: int, wit) -> list:
    data = column.data
    if isinstance(data, wit.ColumnData_EventList):
        values = _event_lists(data.value, n, wit)
    elif isinstance(data, wit.ColumnData_Text):
        dictionary = data.value.dictionary
        size = len(dictionary)
        values = [dictionary[c] if c < size else None for c in data.value.codes]
    else:
        values = list(data.value)
    if len(values) < n:
        values.extend([None] * (n - len(values)))
    valid = column.valid
    if valid:
        values = [v if i < len(valid) and valid[i] else None for i, v in enumerate(values)]
    return values[:n]


def _event_lists(column, n: int, wit) -> list:
    """Rows of an event-list column: lists of ``(time_ms, value)``, oldest first."""
    data = column.values
    if isinstance(data, wit.EventValues_Text):
        dictionary = data.value.dictionary
        flat = [dictionary[c] if c < len(dictionary) else None for c in data.value.codes]
    else:
        flat = list(data.value)
    offsets, times = column.offsets, column.times
    return [
        list(zip(times[offsets[r] : offsets[r + 1]], flat[offsets[r] : offsets[r + 1]]))
        for r in range(min(n, len(offsets) - 1))
    ]


class _ColumnBuilder:
    """Accumulates one feature column, checking each value against the declared type."""

    __slots__ = ("name", "kind", "values", "valid", "any_null", "dictionary", "index")

    def __init__(self, name: str, kind: ValueType):
        self.name = name
        self.kind = kind
        self.values: list = []
        self.valid: list[bool] = []
        self.any_null = False
        self.dictionary: list[str] = []
        self.index: dict[str, int] = {}

    def push(self, value) -> str | None:
        """Appends ``value``; returns why it does not fit, or ``None``."""
        kind = self.kind
        if value is None:
            self.any_null = True
            self.valid.append(False)
            self.values.append(_NULL[kind])
            return None
        if kind is ValueType.INT64:
            if isinstance(value, bool) or not isinstance(value, int):
                return _mismatch(value, kind)
            if not INT64_MIN <= value <= INT64_MAX:
                return f"value {value} does not fit in int64"
        elif kind is ValueType.FLOAT64:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return _mismatch(value, kind)
            try:
                value = float(value)
            except OverflowError:
                return f"value {value} does not fit in float64"
        elif kind is ValueType.TEXT:
            if not isinstance(value, str):
                return _mismatch(value, kind)
            code = self.index.get(value)
            if code is None:
                code = self.index[value] = len(self.dictionary)
                self.dictionary.append(value)
            value = code
        elif not isinstance(value, bool):
            return _mismatch(value, kind)
        self.values.append(value)
        self.valid.append(True)
        return None

    def finish(self, wit):
        kind = self.kind
        if kind is ValueType.INT64:
            data = wit.ColumnData_Int64(self.values)
        elif kind is ValueType.FLOAT64:
            data = wit.ColumnData_Float64(self.values)
        elif kind is ValueType.TEXT:
            data = wit.ColumnData_Text(wit.TextColumn(dictionary=self.dictionary, codes=self.values))
        else:
            data = wit.ColumnData_Boolean(self.values)
        return wit.Column(data=data, valid=self.valid if self.any_null else [])


_NULL = {ValueType.INT64: 0, ValueType.FLOAT64: 0.0, ValueType.TEXT: 0, ValueType.BOOLEAN: False}


def _mismatch(value, kind: ValueType) -> str:
    return f"value {value!r} ({type(value).__name__}) does not match the declared type {kind.value}"


def _wit_type(kind: ValueType, wit):
    return getattr(wit.ValueType, kind.name)


def _wit_aggregation(kind: AggregationKind, wit):
    return getattr(wit.AggregationKind, kind.name)
