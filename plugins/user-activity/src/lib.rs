//! `user-activity`: the features of the Python loop that Wafer replaces.
//!
//! - Entity: `user_id`.
//! - Inputs: `action` (text), `value` (float64).
//! - Window: `1h`, sliding, 3,600,000 ms of event time.
//! - Outputs: `event_count_1h` (int64), `unique_actions_1h` (int64),
//!   `avg_value_1h` (float64, sum / count, 0.0 when empty),
//!   `last_action` (text, null when empty; latest by event time).

use wafer_guest::{AggregationKind, Descriptor, FeaturePlugin, Row, Value, ValueType};

const HOUR_MS: u64 = 3_600_000;

/// The crate version, unless the build stamps another with `WAFER_PLUGIN_VERSION`.
const VERSION: &str = match option_env!("WAFER_PLUGIN_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

pub struct UserActivity;

impl FeaturePlugin for UserActivity {
    fn describe() -> Descriptor {
        Descriptor::new("user-activity", VERSION, "user_id")
            .input("action", ValueType::Text)
            .input("value", ValueType::Float64)
            .sliding_window("1h", HOUR_MS)
            .aggregate("1h", AggregationKind::Count, None)
            .aggregate("1h", AggregationKind::DistinctCount, Some("action"))
            .aggregate("1h", AggregationKind::Sum, Some("value"))
            .aggregate("1h", AggregationKind::Last, Some("action"))
            .feature("event_count_1h", ValueType::Int64)
            .feature("unique_actions_1h", ValueType::Int64)
            .feature("avg_value_1h", ValueType::Float64)
            .feature("last_action", ValueType::Text)
    }

    fn compute(row: &Row<'_>) -> Result<Vec<Value>, String> {
        let count = row.int(0).unwrap_or(0);
        let unique = row.int(1).unwrap_or(0);
        let sum = row.float(2).unwrap_or(0.0);
        let avg = if count > 0 { sum / count as f64 } else { 0.0 };
        let last = row
            .text(3)
            .map_or(Value::Null, |a| Value::Text(a.to_owned()));
        Ok(vec![
            Value::Int(count),
            Value::Int(unique),
            Value::Float(avg),
            last,
        ])
    }
}

wafer_guest::export_plugin!(UserActivity);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cells: &[Value]) -> Vec<Value> {
        UserActivity::compute(&Row::new(cells)).unwrap()
    }

    #[test]
    fn average_is_sum_over_count() {
        let out = run(&[
            Value::Int(4),
            Value::Int(2),
            Value::Float(10.0),
            Value::Text("buy".into()),
        ]);
        assert_eq!(
            out,
            vec![
                Value::Int(4),
                Value::Int(2),
                Value::Float(2.5),
                Value::Text("buy".into())
            ]
        );
    }

    #[test]
    fn empty_window_gives_zero_average_and_null_action() {
        let out = run(&[Value::Int(0), Value::Int(0), Value::Float(0.0), Value::Null]);
        assert_eq!(
            out,
            vec![Value::Int(0), Value::Int(0), Value::Float(0.0), Value::Null]
        );
    }

    #[test]
    fn descriptor_lines_up_aggregations_and_features() {
        let d = UserActivity::describe();
        assert_eq!(d.entity_key, "user_id");
        assert_eq!(d.aggregations.len(), 4);
        assert_eq!(d.features.len(), 4);
        assert_eq!(d.windows[0].length_ms, 3_600_000);
    }
}
