// `user-activity`: the features of the Python loop that Wafer replaces.
//
// - Entity: `user_id`.
// - Inputs: `action` (text), `value` (float64).
// - Window: `1h`, sliding, 3,600,000 ms of event time.
// - Outputs: `event_count_1h` (int64), `unique_actions_1h` (int64),
//   `avg_value_1h` (float64, sum / count, 0.0 when empty),
//   `last_action` (text, null when empty; latest by event time).

import { AggregationKind, Descriptor, ValueType } from '../../../guest-sdk/js/src/index.js';

export const VERSION = '0.1.0';
export const HOUR_MS = 3_600_000;

export const UserActivity = {
  describe() {
    return new Descriptor('user-activity', VERSION, 'user_id')
      .input('action', ValueType.TEXT)
      .input('value', ValueType.FLOAT64)
      .slidingWindow('1h', HOUR_MS)
      .aggregate('1h', AggregationKind.COUNT)
      .aggregate('1h', AggregationKind.DISTINCT_COUNT, 'action')
      .aggregate('1h', AggregationKind.SUM, 'value')
      .aggregate('1h', AggregationKind.LAST, 'action')
      .feature('event_count_1h', ValueType.INT64)
      .feature('unique_actions_1h', ValueType.INT64)
      .feature('avg_value_1h', ValueType.FLOAT64)
      .feature('last_action', ValueType.TEXT);
  },

  compute(row) {
    const count = row.int(0) ?? 0;
    const unique = row.int(1) ?? 0;
    const sum = row.float(2) ?? 0;
    const avg = count > 0 ? sum / count : 0;
    return [count, unique, avg, row.text(3)];
  },
};
