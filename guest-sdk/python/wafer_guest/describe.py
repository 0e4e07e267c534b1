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
    #: Population variance (divides by n); ``float`` or ``None`` on an empty window.
    VARIANCE = "variance"
    #: Population standard deviation; ``float`` or ``None`` on an empty window.
    STDDEV = "stddev"
    #: Approximate quantile of a numeric field (within 1%; float, None on an
    #: empty window); ask with ``Descriptor.quantile``.
    APPROX_QUANTILE = "approx-quantile"
    #: The window's raw events, a list of ``(time_ms, value)``, oldest first, at most
    #: ``max_events`` (the newest); ask with ``Descriptor.events``.
    EVENTS = "events"


class WindowKind(Enum):
    """How a window relates to time (exact rules: the host's docs/semantics.md)."""

    #: Events with time in (T - length, T], T = stream time.
    SLIDING = "sliding"
    #: Aligned instances [k * length, (k + 1) * length), shown once fired.
    TUMBLING = "tumbling"
    #: Aligned instances [k * hop, k * hop + length), shown once fired.
    HOPPING = "hopping"
    #: Sessions of events closer than the gap, shown once fired, for ``length_ms``.
    SESSION = "session"


@dataclass(frozen=True)
class InputField:
    """An event field the plugin reads."""

    name: str
    kind: ValueType


@dataclass(frozen=True)
class Window:
    """A window the aggregations refer to by name.

    ``length_ms`` is the length (sliding, tumbling, hopping) or, for a session
    window, how long the latest session stays visible after its end.
    """

    name: str
    length_ms: int
    kind: WindowKind = WindowKind.SLIDING
    hop_ms: int | None = None
    gap_ms: int | None = None
    grace_ms: int = 0
    early_results: bool = False


@dataclass(frozen=True)
class Aggregation:
    """One aggregation column handed to ``compute``, in declaration order."""

    window: str
    kind: AggregationKind
    field: str | None = None
    quantile: float | None = None
    max_events: int | None = None


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
        return self._window(name, WindowKind.SLIDING, length_ms)

    def tumbling_window(
        self, name: str, length_ms: int, grace_ms: int = 0, early_results: bool = False
    ) -> Descriptor:
        """Declares tumbling instances of ``length_ms``, accepting late events for ``grace_ms``."""
        return self._window(name, WindowKind.TUMBLING, length_ms, None, None, grace_ms, early_results)

    def hopping_window(
        self,
        name: str,
        length_ms: int,
        hop_ms: int,
        grace_ms: int = 0,
        early_results: bool = False,
    ) -> Descriptor:
        """Declares instances of ``length_ms`` starting every ``hop_ms``."""
        _ms(name, "hop_ms", hop_ms)
        return self._window(name, WindowKind.HOPPING, length_ms, hop_ms, None, grace_ms, early_results)

    def session_window(
        self,
        name: str,
        gap_ms: int,
        visible_ms: int,
        grace_ms: int = 0,
        early_results: bool = False,
    ) -> Descriptor:
        """Declares sessions with inactivity gap ``gap_ms``, visible ``visible_ms`` after their end."""
        _ms(name, "gap_ms", gap_ms)
        return self._window(name, WindowKind.SESSION, visible_ms, None, gap_ms, grace_ms, early_results)

    def _window(self, name, kind, length_ms, hop_ms=None, gap_ms=None, grace_ms=0, early=False):
        _ms(name, "length_ms", length_ms)
        _ms(name, "grace_ms", grace_ms)
        self.windows.append(
            Window(name, length_ms, kind, hop_ms, gap_ms, grace_ms, bool(early))
        )
        return self

    def aggregate(self, window: str, kind: AggregationKind, field: str | None = None) -> Descriptor:
        """Asks for an aggregation over ``window``; ``field`` is ``None`` for ``COUNT``.

        Aggregations reach ``compute`` in the order they are declared here.
        """
        self.aggregations.append(Aggregation(window, _check(kind, AggregationKind), field))
        return self

    def events(self, window: str, field: str, max_events: int) -> Descriptor:
        """Asks for the raw events of ``window``: per row, a list of ``(time_ms, value)``
        of ``field``, oldest first, at most the newest ``max_events`` (1 to 10,000,
        checked by the host at load)."""
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"events over {window!r}: max_events must be a positive int")
        self.aggregations.append(
            Aggregation(window, AggregationKind.EVENTS, field, max_events=max_events)
        )
        return self

    def quantile(self, window: str, field: str, quantile: float) -> Descriptor:
        """Asks for the approximate quantile ``quantile`` (0 to 1; 0.5 is the median) of
        numeric ``field`` over ``window``: a float within 1% of the exact value, ``None``
        on an empty window."""
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not (
            0 <= quantile <= 1
        ):
            raise ValueError(f"quantile over {window!r}: quantile must be between 0 and 1")
        self.aggregations.append(
            Aggregation(window, AggregationKind.APPROX_QUANTILE, field, quantile=float(quantile))
        )
        return self

    def feature(self, name: str, kind: ValueType) -> Descriptor:
        """Declares a returned feature; ``compute`` returns values in this order."""
        self.features.append(Feature(name, _check(kind, ValueType)))
        return self


def _ms(name, what, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"window {name!r}: {what} must be a non-negative int")


def _check(kind, enum):
    if not isinstance(kind, enum):
        raise TypeError(f"expected a {enum.__name__}, got {kind!r}")
    return kind
