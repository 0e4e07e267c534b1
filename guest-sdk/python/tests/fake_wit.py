"""A stand-in for the ``wit_world.imports.types`` module that componentize-py
generates from wit/, with the same class and field names, so the glue is
testable without the toolchain. tests/test_bindings.py runs the same checks
against the real generated module when the toolchain is installed.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union


class ValueType(Enum):
    INT64 = 0
    FLOAT64 = 1
    TEXT = 2
    BOOLEAN = 3


class WindowKind(Enum):
    SLIDING = 0
    TUMBLING = 1
    HOPPING = 2
    SESSION = 3


class AggregationKind(Enum):
    COUNT = 0
    SUM = 1
    MEAN = 2
    MIN = 3
    MAX = 4
    DISTINCT_COUNT = 5
    FIRST = 6
    LAST = 7
    VARIANCE = 8
    STDDEV = 9
    APPROX_QUANTILE = 10
    EVENTS = 11


@dataclass
class InputField:
    name: str
    kind: ValueType


@dataclass
class WindowSpec:
    name: str
    kind: WindowKind
    length_ms: int
    hop_ms: Optional[int]
    gap_ms: Optional[int]
    grace_ms: int
    early_results: bool


@dataclass
class AggregationSpec:
    window: str
    kind: AggregationKind
    field: Optional[str]
    quantile: Optional[float]
    max_events: Optional[int]


@dataclass
class FeatureSpec:
    name: str
    kind: ValueType


@dataclass
class Descriptor:
    name: str
    version: str
    entity_key: str
    inputs: list
    windows: list
    aggregations: list
    features: list


@dataclass
class TextColumn:
    dictionary: list
    codes: list


@dataclass
class ColumnData_Int64:
    value: list


@dataclass
class ColumnData_Float64:
    value: list


@dataclass
class ColumnData_Text:
    value: TextColumn


@dataclass
class ColumnData_Boolean:
    value: list


@dataclass
class EventValues_Int64:
    value: list


@dataclass
class EventValues_Float64:
    value: list


@dataclass
class EventValues_Text:
    value: TextColumn


@dataclass
class EventValues_Boolean:
    value: list


EventValues = Union[EventValues_Int64, EventValues_Float64, EventValues_Text, EventValues_Boolean]


@dataclass
class EventListColumn:
    offsets: list
    times: list
    values: EventValues


@dataclass
class ColumnData_EventList:
    value: EventListColumn


ColumnData = Union[
    ColumnData_Int64, ColumnData_Float64, ColumnData_Text, ColumnData_Boolean, ColumnData_EventList
]


@dataclass
class Column:
    data: ColumnData
    valid: list


@dataclass
class Batch:
    rows: int
    columns: list
