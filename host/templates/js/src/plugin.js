// `{{name}}`: a Wafer feature plugin.
//
// - Entity: `user_id`.
// - Inputs: `action` (text), `value` (float64).
// - Window: `10m`, sliding, 600,000 ms of event time.
// - Outputs: `events_10m` (int64), `avg_value_10m` (float64, 0.0 when empty),
//   `max_value_10m` (float64, null when empty), `last_action` (text, null when
//   empty; latest by event time).

import { AggregationKind, Descriptor, ValueType } from '../guest-sdk/js/src/index.js';

export const VERSION = '0.1.0';
export const WINDOW_MS = 600_000;

export const {{Type}} = {
  describe() {
    return new Descriptor('{{name}}', VERSION, 'user_id')
      .input('action', ValueType.TEXT)
      .input('value', ValueType.FLOAT64)
      .slidingWindow('10m', WINDOW_MS)
      .aggregate('10m', AggregationKind.COUNT)
      .aggregate('10m', AggregationKind.SUM, 'value')
      .aggregate('10m', AggregationKind.MAX, 'value')
      .aggregate('10m', AggregationKind.LAST, 'action')
      .feature('events_10m', ValueType.INT64)
      .feature('avg_value_10m', ValueType.FLOAT64)
      .feature('max_value_10m', ValueType.FLOAT64)
      .feature('last_action', ValueType.TEXT);
  },

  compute(row) {
    const count = row.int(0) ?? 0;
    const sum = row.float(1) ?? 0;
    const avg = count > 0 ? sum / count : 0;
    // null is null: max and last of an empty window.
    return [count, avg, row.float(2), row.text(3)];
  },
};
