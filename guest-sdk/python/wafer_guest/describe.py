"""The plugin's self-description, as plain Python with a small builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ValueType(Enum):
    """Type of an input field or of a feature value."""

    INT64 = "int64"
    FLOAT64 = "float64"
    TEXT = "text"
    BOOLEAN = "boolean"


class AggregationKind(Enum):
    """Aggregations the host computes incrementally for the plugin.

    ``COUNT`` and ``DISTINCT_COUNT`` arrive as ``int``; ``SUM`` as ``float``;
    ``MEAN``, ``MIN``, ``MAX`` as ``float`` or ``None`` on an empty window;
    ``FIRST`` and ``LAST`` in the field's type, or ``None`` on an empty window.
    """

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    DISTINCT_COUNT = "distinct-count"
    FIRST = "first"
    LAST = "last"


@dataclass(frozen=True)
class InputField:
    """An event field the plugin reads."""

    name: str
    kind: ValueType


@dataclass(frozen=True)
class Window:
    """A sliding window: events with time in (T - length, T], T = stream time."""

    name: str
    length_ms: int


@dataclass(frozen=True)
class Aggregation:
    """One aggregation column handed to ``compute``, in declaration order."""

    window: str
    kind: AggregationKind
    field: str | None = None


@dataclass(frozen=True)
class Feature:
    """One feature column returned by the plugin, in declaration order."""

    name: str
    kind: ValueType


@dataclass
class Descriptor:
    """Everything the host needs to know about a plugin.

    Build it with chained calls::

        Descriptor("user-activity", "0.1.0", "user_id")
            .input("action", ValueType.TEXT)
            .sliding_window("1h", 3_600_000)
            .aggregate("1h", AggregationKind.COUNT)
            .feature("event_count_1h", ValueType.INT64)
    """

    name: str
    version: str
    entity_key: str
    inputs: list[InputField] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    aggregations: list[Aggregation] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)

    def input(self, name: str, kind: ValueType) -> Descriptor:
        """Declares an event field the plugin reads."""
        self.inputs.append(InputField(name, _check(kind, ValueType)))
        return self

    def sliding_window(self, name: str, length_ms: int) -> Descriptor:
        """Declares a sliding window of ``length_ms`` milliseconds."""
        if isinstance(length_ms, bool) or not isinstance(length_ms, int) or length_ms < 0:
            raise ValueError(f"window {name!r}: length_ms must be a non-negative int")
        self.windows.append(Window(name, length_ms))
        return self

    def aggregate(self, window: str, kind: AggregationKind, field: str | None = None) -> Descriptor:
        """Asks for an aggregation over ``window``; ``field`` is ``None`` for ``COUNT``.

        Aggregations reach ``compute`` in the order they are declared here.
        """
        self.aggregations.append(Aggregation(window, _check(kind, AggregationKind), field))
        return self

    def feature(self, name: str, kind: ValueType) -> Descriptor:
        """Declares a returned feature; ``compute`` returns values in this order."""
        self.features.append(Feature(name, _check(kind, ValueType)))
        return self


def _check(kind, enum):
    if not isinstance(kind, enum):
        raise TypeError(f"expected a {enum.__name__}, got {kind!r}")
    return kind
