// The glue between WIT columns (as the componentize-js bindings present them)
// and rows, natively.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AggregationKind, Descriptor, PluginError, Row } from '../src/index.js';
import { computeColumns, rowsOf, toWitDescriptor } from '../src/glue.js';
import { batch, everyTypeDescriptor } from '../testing/fixtures.mjs';

// Returns [count, mean, last, first] as (int, float, text, bool) features.
const echo = {
  describe: everyTypeDescriptor,
  compute: (row) => [row.int(0), row.float(2), row.text(7), row.bool(6)],
};

const returns = (values) => ({ describe: everyTypeDescriptor, compute: () => values });

const run = (plugin) => computeColumns(plugin, plugin.describe(), batch());

test('the descriptor in WIT form', () => {
  const d = toWitDescriptor(everyTypeDescriptor());
  assert.equal(d.entityKey, 'user_id');
  assert.deepEqual(d.windows, [
    {
      name: '1h',
      kind: 'sliding',
      lengthMs: 3_600_000n,
      hopMs: undefined,
      gapMs: undefined,
      graceMs: 0n,
      earlyResults: false,
    },
  ]);
  assert.deepEqual(
    d.aggregations.map((a) => [a.kind, a.field]),
    [
      ['count', undefined],
      ['sum', 'value'],
      ['mean', 'value'],
      ['min', 'n'],
      ['max', 'n'],
      ['distinct-count', 'action'],
      ['first', 'flag'],
      ['last', 'action'],
    ],
  );
  assert.deepEqual(
    d.features.map((f) => f.kind),
    ['int64', 'float64', 'text', 'boolean'],
  );
});

test('rows decode dictionaries, null masks and int64', () => {
  const rows = rowsOf(batch());
  assert.deepEqual(rows[0].cells, [3, 6, 2, 1, 3, 2, true, 'view']);
  assert.deepEqual(rows[1].cells, [0, 0, null, null, null, 0, null, null]);
  // int64 beyond the safe-integer range stays exact, as a bigint.
  assert.deepEqual(rows[2].cells, [1, 2.5, 2.5, 2.5, 2.5, 2n ** 60n, false, 'view']);
});

test('int64 cells and features are exact at the safe-integer edges and beyond', () => {
  const big = [0n, -1n, 1n, 2n ** 32n, -(2n ** 32n), 2n ** 32n - 1n, -(2n ** 32n) + 1n, 123456789012n,
    2n ** 53n - 1n, -(2n ** 53n) + 1n, 2n ** 53n, -(2n ** 53n), -(2n ** 53n) + 2n ** 32n,
    2n ** 63n - 1n, -(2n ** 63n), 2n ** 60n + 7n];
  const column = { data: { tag: 'int64', val: BigInt64Array.from(big) }, valid: [] };
  const input = { rows: big.length, columns: [column] };
  // The reference reading: a number exactly when the value is a safe integer.
  const safe = (b) => b >= -(2n ** 53n) + 1n && b <= 2n ** 53n - 1n;
  assert.deepEqual(
    rowsOf(input).map((r) => r.cells[0]),
    big.map((b) => (safe(b) ? Number(b) : b)),
  );
  // Returned as read (numbers and bigints), they come back as the same int64s.
  const raw = { describe: everyTypeDescriptor, compute: (row) => [row.get(0), 0, null, null] };
  const [i] = computeColumns(raw, raw.describe(), input);
  assert.deepEqual(i.data.val, BigInt64Array.from(big));
});

test('columns are typed, dictionary-encoded and masked', () => {
  const [i, f, t, b] = run(echo);
  assert.deepEqual(i, { data: { tag: 'int64', val: BigInt64Array.from([3n, 0n, 1n]) }, valid: [] });
  assert.deepEqual(f, {
    data: { tag: 'float64', val: Float64Array.from([2, 0, 2.5]) },
    valid: [true, false, true],
  });
  assert.deepEqual(t, {
    data: { tag: 'text', val: { dictionary: ['view'], codes: Uint32Array.from([0, 0, 0]) } },
    valid: [true, false, true],
  });
  assert.deepEqual(b, { data: { tag: 'boolean', val: [true, false, false] }, valid: [true, false, true] });
});

test('an empty batch gives empty columns', () => {
  const cols = computeColumns(echo, echo.describe(), { rows: 0, columns: [] });
  assert.deepEqual(
    cols.map((c) => [c.data.tag, c.valid.length]),
    [
      ['int64', 0],
      ['float64', 0],
      ['text', 0],
      ['boolean', 0],
    ],
  );
});

test('bigints and integral numbers both fit int64 and float64', () => {
  const [i, f] = run(returns([2n ** 62n, 7n, 'x', true]));
  assert.deepEqual([...i.data.val], [2n ** 62n, 2n ** 62n, 2n ** 62n]);
  assert.deepEqual([...f.data.val], [7, 7, 7]);
});

const rejects = [
  [[1, 2.0, 'x'], 'row 0: compute returned 3 values, the descriptor declares 4 features'],
  [undefined, 'row 0: compute returned undefined'],
  [[1.5, 2.0, 'x', true], 'row 0, feature i: value 1.5 (number) is not an int64'],
  [[true, 2.0, 'x', true], 'feature i: value true (boolean) is not an int64'],
  [[2n ** 63n, 2.0, 'x', true], 'feature i: value 9223372036854775808 does not fit in int64'],
  [[1, '2', 'x', true], 'feature f: value "2" (string) is not a float64'],
  [[1, 2.0, 3, true], 'feature t: value 3 (number) is not text'],
  [[1, 2.0, 'x', 1], 'feature b: value 1 (number) is not a boolean'],
];

for (const [values, message] of rejects) {
  test(`rejects ${message}`, () => {
    assert.throws(
      () => run(returns(values)),
      (e) => e instanceof PluginError && e.message.includes(message),
    );
  });
}

test('a throwing plugin fails the batch, naming the row', () => {
  const fails = {
    describe: everyTypeDescriptor,
    compute(row) {
      if (row.int(0) === 0) throw new RangeError('no events');
      return [1, 1.0, 'a', true];
    },
  };
  assert.throws(() => run(fails), { name: 'PluginError', message: 'row 1: RangeError: no events' });
});

test('row accessors', () => {
  const row = new Row([3, 2.5, 'x', true, null, 2n ** 60n]);
  assert.deepEqual([row.int(0), row.float(0), row.text(0), row.bool(0)], [3, 3, null, null]);
  assert.deepEqual([row.int(1), row.float(1), row.bigint(1)], [null, 2.5, null]);
  assert.deepEqual([row.text(2), row.int(2)], ['x', null]);
  assert.deepEqual([row.bool(3), row.int(3), row.float(3)], [true, null, null]);
  assert.deepEqual([row.get(4), row.int(4), row.get(99)], [null, null, null]);
  assert.deepEqual([row.bigint(5), row.int(5), row.bigint(0)], [2n ** 60n, 2 ** 60, 3n]);
  assert.equal(row.length, 6);
});

test('window kinds and their settings in WIT form', () => {
  const d = toWitDescriptor(
    new Descriptor('p', '1', 'k')
      .tumblingWindow('1m', 60_000, { graceMs: 5_000 })
      .hoppingWindow('1h', 3_600_000, 60_000, { earlyResults: true })
      .sessionWindow('s', 1_800_000, 3_600_000)
      .aggregate('1m', AggregationKind.VARIANCE, 'v')
      .events('s', 'v', 50)
      .quantile('1h', 'v', 0.9),
  );
  assert.deepEqual(
    d.windows.map((w) => [w.kind, w.lengthMs, w.hopMs, w.gapMs, w.graceMs, w.earlyResults]),
    [
      ['tumbling', 60_000n, undefined, undefined, 5_000n, false],
      ['hopping', 3_600_000n, 60_000n, undefined, 0n, true],
      ['session', 3_600_000n, undefined, 1_800_000n, 0n, false],
    ],
  );
  assert.deepEqual(
    d.aggregations.map((a) => [a.kind, a.field, a.quantile, a.maxEvents]),
    [
      ['variance', 'v', undefined, undefined],
      ['events', 'v', undefined, 50],
      ['approx-quantile', 'v', 0.9, undefined],
    ],
  );
});

test('event lists decode per row', () => {
  const column = {
    data: {
      tag: 'event-list',
      val: {
        offsets: Uint32Array.from([0, 2, 2, 3]),
        times: BigInt64Array.from([10n, 11n, 20n]),
        values: { tag: 'text', val: { dictionary: ['a', 'b'], codes: Uint32Array.from([1, 0, 1]) } },
      },
    },
    valid: [],
  };
  const rows = rowsOf({ rows: 3, columns: [column] });
  assert.deepEqual(
    rows.map((r) => r.get(0)),
    [[[10, 'b'], [11, 'a']], [], [[20, 'b']]],
  );
});
