// The descriptor builder and logging, natively.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AggregationKind, Descriptor, log, ValueType } from '../src/index.js';

test('the builder keeps declaration order', () => {
  const d = new Descriptor('p', '1', 'k')
    .input('a', ValueType.TEXT)
    .slidingWindow('5m', 300_000)
    .aggregate('5m', AggregationKind.COUNT)
    .aggregate('5m', AggregationKind.LAST, 'a')
    .feature('n', ValueType.INT64)
    .feature('last', ValueType.TEXT);
  assert.deepEqual(
    d.aggregations.map((a) => [a.kind, a.field]),
    [
      ['count', null],
      ['last', 'a'],
    ],
  );
  assert.deepEqual(
    d.features.map((f) => f.name),
    ['n', 'last'],
  );
});

test('the builder rejects unknown kinds and bad lengths', () => {
  assert.throws(() => new Descriptor('p', '1', 'k').input('a', 'string'), TypeError);
  assert.throws(() => new Descriptor('p', '1', 'k').aggregate('w', 'median'), TypeError);
  assert.throws(() => new Descriptor('p', '1', 'k').slidingWindow('w', 1.5), RangeError);
  assert.throws(() => new Descriptor('p', '1', 'k').slidingWindow('w', -1), RangeError);
});

test('the builder declares quantiles between 0 and 1', () => {
  const d = new Descriptor('p', '1', 'k').quantile('w', 'v', 0.5).quantile('w', 'v', 0);
  assert.deepEqual(
    d.aggregations.map((a) => [a.kind, a.field, a.quantile]),
    [
      ['approx-quantile', 'v', 0.5],
      ['approx-quantile', 'v', 0],
    ],
  );
  for (const bad of [-0.1, 1.5, NaN, '0.5', null]) {
    assert.throws(() => new Descriptor('p', '1', 'k').quantile('w', 'v', bad), RangeError);
  }
});

test('log lines go to the sink when set', () => {
  const lines = [];
  log.setSink((level, message, fields) => lines.push([level, message, fields]));
  try {
    log.info('hello', { rows: 3 });
    log.emit(log.Level.WARN, 'odd', [['user', 'u1']]);
    log.error('bad');
  } finally {
    log.setSink(null);
  }
  assert.deepEqual(lines, [
    ['info', 'hello', [['rows', '3']]],
    ['warn', 'odd', [['user', 'u1']]],
    ['error', 'bad', []],
  ]);
  assert.throws(() => log.emit('loud', 'x'), TypeError);
});
