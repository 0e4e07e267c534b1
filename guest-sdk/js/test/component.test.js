// component.js natively: the WIT `log` import is resolved to a recording stub
// (testing/wit-log-hooks.mjs), so exportPlugin runs without a component.

import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

import { batch, everyTypeDescriptor } from '../testing/fixtures.mjs';

register('../testing/wit-log-hooks.mjs', import.meta.url);
const { exportPlugin } = await import('../src/component.js');
const { calls } = await import('../testing/wit-log-stub.mjs');
const { log } = await import('../src/index.js');

test('exports describe and compute over the WIT shapes', () => {
  const { describe, compute } = exportPlugin({
    describe: everyTypeDescriptor,
    compute: (row) => [row.int(0), row.float(1), row.text(7), row.bool(6)],
  });
  assert.equal(describe().entityKey, 'user_id');
  const result = compute(batch());
  assert.equal(result.tag, 'ok');
  assert.deepEqual(
    result.val.map((c) => c.data.tag),
    ['int64', 'float64', 'text', 'boolean'],
  );
});

test('a class is instantiated', () => {
  class Plugin {
    describe() {
      return everyTypeDescriptor();
    }
    compute() {
      return [1, 2, 'x', false];
    }
  }
  assert.equal(exportPlugin(Plugin).compute(batch()).tag, 'ok');
});

test('errors become the err case, with the reason', () => {
  const { compute } = exportPlugin({ describe: everyTypeDescriptor, compute: () => [1] });
  const result = compute(batch());
  assert.equal(result.tag, 'err');
  assert.match(result.val, /row 0: compute returned 1 values, the descriptor declares 4 features/);
});

test('logging reaches the WIT import', () => {
  exportPlugin({ describe: everyTypeDescriptor, compute: () => [] });
  calls.length = 0;
  try {
    log.warn('from the plugin', { rows: 3 });
  } finally {
    log.setSink(null);
  }
  assert.deepEqual(calls, [['warn', 'from the plugin', [['rows', '3']]]]);
});
