// Shared fixtures of the native tests: a descriptor using every type and
// aggregation, and a batch as the componentize-js bindings present it.

import { AggregationKind, Descriptor, ValueType } from '../src/index.js';

export function everyTypeDescriptor() {
  return new Descriptor('p', '1.2.3', 'user_id')
    .input('action', ValueType.TEXT)
    .input('value', ValueType.FLOAT64)
    .input('flag', ValueType.BOOLEAN)
    .input('n', ValueType.INT64)
    .slidingWindow('1h', 3_600_000)
    .aggregate('1h', AggregationKind.COUNT)
    .aggregate('1h', AggregationKind.SUM, 'value')
    .aggregate('1h', AggregationKind.MEAN, 'value')
    .aggregate('1h', AggregationKind.MIN, 'n')
    .aggregate('1h', AggregationKind.MAX, 'n')
    .aggregate('1h', AggregationKind.DISTINCT_COUNT, 'action')
    .aggregate('1h', AggregationKind.FIRST, 'flag')
    .aggregate('1h', AggregationKind.LAST, 'action')
    .feature('i', ValueType.INT64)
    .feature('f', ValueType.FLOAT64)
    .feature('t', ValueType.TEXT)
    .feature('b', ValueType.BOOLEAN);
}

// Three rows; text dictionary-encoded, nulls in MEAN, MIN, MAX, FIRST and LAST.
export function batch() {
  const f64 = (a) => ({ tag: 'float64', val: Float64Array.from(a) });
  const s64 = (a) => ({ tag: 'int64', val: BigInt64Array.from(a) });
  const someNull = [true, false, true];
  return {
    rows: 3,
    columns: [
      { data: s64([3n, 0n, 1n]), valid: [] },
      { data: f64([6, 0, 2.5]), valid: [] },
      { data: f64([2, 0, 2.5]), valid: someNull },
      { data: f64([1, 0, 2.5]), valid: someNull },
      { data: f64([3, 0, 2.5]), valid: someNull },
      { data: s64([2n, 0n, 2n ** 60n]), valid: [] },
      { data: { tag: 'boolean', val: [true, false, false] }, valid: someNull },
      {
        data: { tag: 'text', val: { dictionary: ['buy', 'view'], codes: Uint32Array.from([1, 0, 1]) } },
        valid: someNull,
      },
    ],
  };
}
