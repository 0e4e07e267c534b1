// The plugin's logic, natively: no wasm, no bindings.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AggregationKind, Row, ValueType } from '../../../guest-sdk/js/src/index.js';
import { HOUR_MS, UserActivity } from '../src/user_activity.js';

test('average is sum over count', () => {
  assert.deepEqual(UserActivity.compute(new Row([4, 2, 10.0, 'buy'])), [4, 2, 2.5, 'buy']);
});

test('empty window gives zero average and null action', () => {
  assert.deepEqual(UserActivity.compute(new Row([0, 0, 0.0, null])), [0, 0, 0, null]);
});

test('null aggregates are treated as empty', () => {
  assert.deepEqual(UserActivity.compute(new Row([null, null, null, null])), [0, 0, 0, null]);
});

test('descriptor matches the Rust plugin', () => {
  const d = UserActivity.describe();
  assert.deepEqual([d.name, d.version, d.entityKey], ['user-activity', '0.1.0', 'user_id']);
  assert.deepEqual(d.inputs, [
    { name: 'action', kind: ValueType.TEXT },
    { name: 'value', kind: ValueType.FLOAT64 },
  ]);
  assert.equal(HOUR_MS, 3_600_000);
  assert.deepEqual(
    d.windows.map((w) => [w.name, w.kind, w.lengthMs]),
    [['1h', 'sliding', 3_600_000]],
  );
  assert.deepEqual(
    d.aggregations.map((a) => [a.window, a.kind, a.field]),
    [
      ['1h', AggregationKind.COUNT, null],
      ['1h', AggregationKind.DISTINCT_COUNT, 'action'],
      ['1h', AggregationKind.SUM, 'value'],
      ['1h', AggregationKind.LAST, 'action'],
    ],
  );
  assert.deepEqual(d.features, [
    { name: 'event_count_1h', kind: ValueType.INT64 },
    { name: 'unique_actions_1h', kind: ValueType.INT64 },
    { name: 'avg_value_1h', kind: ValueType.FLOAT64 },
    { name: 'last_action', kind: ValueType.TEXT },
  ]);
});
