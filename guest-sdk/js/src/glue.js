// Conversion between the WIT columns and the rows a plugin's logic sees.
// Used by component.js; plugin authors do not call it.
//
// WIT values as the componentize-js bindings present them: records are
// objects with camelCase fields, enums are their case names, variants are
// `{ tag, val }`, `list<s64>` is a BigInt64Array, `list<f64>` a Float64Array,
// `list<u32>` a Uint32Array, `u64` a bigint and `option<T>` a value or null.

import { ValueType } from './describe.js';
import { rowOver } from './value.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const TWO_32 = 4294967296;

/** An error that fails the whole batch; the host reports its message. */
export class PluginError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PluginError';
  }
}

/** The descriptor in WIT form. */
export function toWitDescriptor(d) {
  return {
    name: d.name,
    version: d.version,
    entityKey: d.entityKey,
    inputs: d.inputs.map((i) => ({ name: i.name, kind: i.kind })),
    windows: d.windows.map((w) => ({
      name: w.name,
      kind: w.kind,
      lengthMs: BigInt(w.lengthMs),
      hopMs: w.hopMs == null ? undefined : BigInt(w.hopMs),
      gapMs: w.gapMs == null ? undefined : BigInt(w.gapMs),
      graceMs: BigInt(w.graceMs),
      earlyResults: w.earlyResults,
    })),
    aggregations: d.aggregations.map((a) => ({
      window: a.window,
      kind: a.kind,
      field: a.field ?? undefined,
      quantile: a.quantile ?? undefined,
      maxEvents: a.maxEvents ?? undefined,
    })),
    features: d.features.map((f) => ({ name: f.name, kind: f.kind })),
  };
}

/** The rows of a WIT batch: text decoded from its dictionary, nulls as null. */
export function rowsOf(batch) {
  const n = batch.rows;
  const columns = batch.columns.map((c) => cells(c, n));
  const k = columns.length;
  const rows = new Array(n);
  for (let r = 0; r < n; r++) {
    const row = new Array(k);
    for (let c = 0; c < k; c++) {
      row[c] = columns[c][r];
    }
    rows[r] = rowOver(row);
  }
  return rows;
}

/**
 * Runs `plugin.compute` on every row of `batch` and returns the feature
 * columns. Throws PluginError (naming the row and feature) when the plugin
 * throws, returns the wrong number of values, or a value of the wrong type.
 */
export function computeColumns(plugin, descriptor, batch) {
  const features = descriptor.features;
  const builders = features.map((f) => new ColumnBuilder(f.name, f.kind));
  const rows = rowsOf(batch);
  for (let r = 0; r < rows.length; r++) {
    let out;
    try {
      out = plugin.compute(rows[r]);
    } catch (e) {
      throw new PluginError(`row ${r}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    if (!Array.isArray(out) || out.length !== features.length) {
      const got = Array.isArray(out) ? `${out.length} values` : String(out);
      throw new PluginError(
        `row ${r}: compute returned ${got}, the descriptor declares ${features.length} features`,
      );
    }
    for (let f = 0; f < builders.length; f++) {
      const err = builders[f].push(out[f]);
      if (err !== null) {
        throw new PluginError(`row ${r}, feature ${builders[f].name}: ${err}`);
      }
    }
  }
  return builders.map((b) => b.finish());
}

// The cells of a BigInt64Array: a number where the value is a safe integer
// (read from its two 32-bit words, without a BigInt per cell), else the bigint.
function int64Cells(a) {
  const words = new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
  const out = new Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const hi = words[2 * i + 1] | 0;
    const n = hi * TWO_32 + words[2 * i];
    // Beyond ±2^53 n may be rounded, but it is then never a safe integer.
    out[i] = Number.isSafeInteger(n) ? n : a[i];
  }
  return out;
}

// A BigInt64Array of int64 values given as safe-integer numbers (written as
// two 32-bit words, without a BigInt each) or bigints.
function toInt64Array(values) {
  const out = new BigInt64Array(values.length);
  const words = new Uint32Array(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === 'number') {
      words[2 * i] = v >>> 0;
      words[2 * i + 1] = Math.floor(v / TWO_32) | 0;
    } else {
      out[i] = v;
    }
  }
  return out;
}

// Rows of an event-list column: arrays of [timeMs, value], oldest first.
function eventLists(val, n) {
  const { offsets, times, values } = val;
  let flat;
  if (values.tag === 'text') {
    const { dictionary, codes } = values.val;
    flat = Array.from(codes, (c) => (c < dictionary.length ? dictionary[c] : null));
  } else if (values.tag === 'int64') {
    flat = int64Cells(values.val);
  } else {
    flat = Array.from(values.val);
  }
  const at = int64Cells(times);
  const rows = [];
  for (let r = 0; r < n && r + 1 < offsets.length; r++) {
    const row = [];
    for (let i = offsets[r]; i < offsets[r + 1]; i++) {
      row.push([at[i], flat[i]]);
    }
    rows.push(row);
  }
  return rows;
}

function cells(column, n) {
  const { tag, val } = column.data;
  let values;
  if (tag === 'event-list') {
    values = eventLists(val, n);
  } else if (tag === 'text') {
    const { dictionary, codes } = val;
    values = Array.from(codes, (c) => (c < dictionary.length ? dictionary[c] : null));
  } else if (tag === 'int64') {
    values = int64Cells(val);
  } else if (tag === 'float64' || tag === 'boolean') {
    values = Array.from(val);
  } else {
    throw new PluginError(`unknown column type ${JSON.stringify(tag)}`);
  }
  const valid = column.valid;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const present = valid.length === 0 || valid[i] === true;
    out[i] = present && i < values.length ? values[i] : null;
  }
  return out;
}

function describeValue(v) {
  const shown = typeof v === 'bigint' ? `${v}n` : typeof v === 'string' ? JSON.stringify(v) : String(v);
  return `value ${shown} (${typeof v})`;
}

/** Accumulates one feature column, checking each value against the declared type. */
class ColumnBuilder {
  constructor(name, kind) {
    this.name = name;
    this.kind = kind;
    this.values = [];
    this.valid = [];
    this.anyNull = false;
    this.dictionary = [];
    this.index = new Map();
  }

  /** Appends `value`; returns why it does not fit, or null. */
  push(value) {
    const kind = this.kind;
    if (value === null || value === undefined) {
      this.anyNull = true;
      this.valid.push(false);
      this.values.push(kind === ValueType.BOOLEAN ? false : 0);
      return null;
    }
    switch (kind) {
      case ValueType.INT64: {
        if (Number.isSafeInteger(value)) {
          this.values.push(value);
          break;
        }
        let b;
        if (typeof value === 'bigint') {
          b = value;
        } else if (typeof value === 'number' && Number.isInteger(value)) {
          b = BigInt(value);
        } else {
          return `${describeValue(value)} is not an int64`;
        }
        if (b < INT64_MIN || b > INT64_MAX) {
          return `value ${b} does not fit in int64`;
        }
        this.values.push(b);
        break;
      }
      case ValueType.FLOAT64:
        if (typeof value === 'bigint') {
          this.values.push(Number(value));
        } else if (typeof value === 'number') {
          this.values.push(value);
        } else {
          return `${describeValue(value)} is not a float64`;
        }
        break;
      case ValueType.TEXT: {
        if (typeof value !== 'string') {
          return `${describeValue(value)} is not text`;
        }
        let code = this.index.get(value);
        if (code === undefined) {
          code = this.dictionary.length;
          this.index.set(value, code);
          this.dictionary.push(value);
        }
        this.values.push(code);
        break;
      }
      default:
        if (typeof value !== 'boolean') {
          return `${describeValue(value)} is not a boolean`;
        }
        this.values.push(value);
    }
    this.valid.push(true);
    return null;
  }

  finish() {
    let data;
    switch (this.kind) {
      case ValueType.INT64:
        data = { tag: 'int64', val: toInt64Array(this.values) };
        break;
      case ValueType.FLOAT64:
        data = { tag: 'float64', val: Float64Array.from(this.values) };
        break;
      case ValueType.TEXT:
        data = { tag: 'text', val: { dictionary: this.dictionary, codes: Uint32Array.from(this.values) } };
        break;
      default:
        data = { tag: 'boolean', val: this.values };
    }
    return { data, valid: this.anyNull ? this.valid : [] };
  }
}
