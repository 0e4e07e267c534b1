"""The plain values a plugin's logic reads and returns.

A cell is ``None`` (null), ``int`` (int64), ``float`` (float64), ``str`` (text)
or ``bool`` (boolean).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

Value = Union[None, int, float, str, bool]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Row(Sequence):
    """One entity's aggregations, in the order the descriptor declared them.

    ``row[i]`` is the raw cell; the typed accessors return ``None`` when the
    cell is null, of another type, or past the end. Plugins build rows
    directly to unit-test their logic: ``Row([4, 2, 10.0, "buy"])``.
    """

    __slots__ = ("_cells",)

    def __init__(self, cells: Sequence[Value]):
        self._cells = tuple(cells)

    def __getitem__(self, i):
        return self._cells[i]

    def __len__(self) -> int:
        return len(self._cells)

    def __repr__(self) -> str:
        return f"Row({list(self._cells)!r})"

    def get(self, i: int) -> Value:
        """The raw cell ``i``, ``None`` past the end."""
        return self._cells[i] if 0 <= i < len(self._cells) else None

    def int(self, i: int) -> int | None:
        """Cell ``i`` as an integer."""
        v = self.get(i)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def float(self, i: int) -> float | None:
        """Cell ``i`` as a float (a float or an int cell)."""
        v = self.get(i)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        return float(v)

    def text(self, i: int) -> str | None:
        """Cell ``i`` as text."""
        v = self.get(i)
        return v if isinstance(v, str) else None

    def bool(self, i: int) -> bool | None:
        """Cell ``i`` as a boolean."""
        v = self.get(i)
        return v if isinstance(v, bool) else None
