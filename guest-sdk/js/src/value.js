// The plain row a plugin's logic reads.
//
// A cell is null, a number (float64, or int64 within the safe-integer range),
// a bigint (int64 beyond the safe-integer range), a string (text) or a boolean.

/**
 * One entity's aggregations, in the order the descriptor declared them.
 * `row.get(i)` is the raw cell; the typed accessors return null when the cell
 * is null, of another type, or past the end. Plugins build rows directly to
 * unit-test their logic: `new Row([4, 2, 10.0, 'buy'])`.
 */
export class Row {
  constructor(cells) {
    this.cells = Array.from(cells, (c) => (c === undefined ? null : c));
  }

  /** Number of cells. */
  get length() {
    return this.cells.length;
  }

  /** The raw cell `i`, null past the end. */
  get(i) {
    return i >= 0 && i < this.cells.length ? this.cells[i] : null;
  }

  /** Cell `i` as an integer `number` (an integral number or a bigint, converted). */
  int(i) {
    const v = this.get(i);
    if (typeof v === 'bigint') return Number(v);
    return typeof v === 'number' && Number.isInteger(v) ? v : null;
  }

  /** Cell `i` as an exact `bigint` (an integral number or a bigint). */
  bigint(i) {
    const v = this.get(i);
    if (typeof v === 'bigint') return v;
    return typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : null;
  }

  /** Cell `i` as a `number` (a number or a bigint, converted). */
  float(i) {
    const v = this.get(i);
    if (typeof v === 'bigint') return Number(v);
    return typeof v === 'number' ? v : null;
  }

  /** Cell `i` as a string. */
  text(i) {
    const v = this.get(i);
    return typeof v === 'string' ? v : null;
  }

  /** Cell `i` as a boolean. */
  bool(i) {
    const v = this.get(i);
    return typeof v === 'boolean' ? v : null;
  }
}

/**
 * A row over `cells` as given (an array of cells, nothing undefined): the
 * SDK's own rows, built without the copy `new Row` makes.
 */
export function rowOver(cells) {
  const row = Object.create(Row.prototype);
  row.cells = cells;
  return row;
}
