// The plugin's logic, natively: no wasm, no bindings.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AggregationKind, Row, ValueType, WindowKind } from '../guest-sdk/js/src/index.js';
import { {{Type}} } from '../src/{{module}}.js';

test('average is sum over count', () => {
  assert.deepEqual({{Type}}.compute(new Row([2, 29.0, 25.0, 'view'])), [2, 14.5, 25.0, 'view']);
});

test('empty window gives zero average and nulls', () => {
  assert.deepEqual({{Type}}.compute(new Row([0, 0.0, null, null])), [0, 0, null, null]);
});

test('descriptor lines up aggregations and features', () => {
  const d = {{Type}}.describe();
  assert.deepEqual([d.name, d.entityKey], ['{{name}}', 'user_id']);
  assert.deepEqual(
    d.windows.map((w) => [w.name, w.kind, w.lengthMs]),
    [['10m', WindowKind.SLIDING, 600_000]],
  );
  assert.deepEqual(
    d.aggregations.map((a) => [a.kind, a.field]),
    [
      [AggregationKind.COUNT, null],
      [AggregationKind.SUM, 'value'],
      [AggregationKind.MAX, 'value'],
      [AggregationKind.LAST, 'action'],
    ],
  );
  assert.deepEqual(
    d.features.map((f) => f.kind),
    [ValueType.INT64, ValueType.FLOAT64, ValueType.FLOAT64, ValueType.TEXT],
  );
});
