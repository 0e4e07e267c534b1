//! `{{name}}`: a Wafer feature plugin.
//!
//! - Entity: `user_id`.
//! - Inputs: `action` (text), `value` (float64).
//! - Window: `10m`, sliding, 600,000 ms of event time.
//! - Outputs: `events_10m` (int64), `avg_value_10m` (float64, 0.0 when
//!   empty), `max_value_10m` (float64, null when empty), `last_action` (text,
//!   null when empty; latest by event time).

use wafer_guest::{AggregationKind, Descriptor, FeaturePlugin, Row, Value, ValueType};

const WINDOW_MS: u64 = 600_000;

pub struct {{Type}};

impl FeaturePlugin for {{Type}} {
    fn describe() -> Descriptor {
        Descriptor::new("{{name}}", env!("CARGO_PKG_VERSION"), "user_id")
            .input("action", ValueType::Text)
            .input("value", ValueType::Float64)
            .sliding_window("10m", WINDOW_MS)
            .aggregate("10m", AggregationKind::Count, None)
            .aggregate("10m", AggregationKind::Sum, Some("value"))
            .aggregate("10m", AggregationKind::Max, Some("value"))
            .aggregate("10m", AggregationKind::Last, Some("action"))
            .feature("events_10m", ValueType::Int64)
            .feature("avg_value_10m", ValueType::Float64)
            .feature("max_value_10m", ValueType::Float64)
            .feature("last_action", ValueType::Text)
    }

    fn compute(row: &Row<'_>) -> Result<Vec<Value>, String> {
        let count = row.int(0).unwrap_or(0);
        let sum = row.float(1).unwrap_or(0.0);
        let avg = if count > 0 { sum / count as f64 } else { 0.0 };
        let max = row.float(2).map_or(Value::Null, Value::Float);
        let last = row
            .text(3)
            .map_or(Value::Null, |a| Value::Text(a.to_owned()));
        Ok(vec![Value::Int(count), Value::Float(avg), max, last])
    }
}

wafer_guest::export_plugin!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cells: &[Value]) -> Vec<Value> {
        {{Type}}::compute(&Row::new(cells)).unwrap()
    }

    #[test]
    fn average_is_sum_over_count() {
        let out = run(&[
            Value::Int(2),
            Value::Float(29.0),
            Value::Float(25.0),
            Value::Text("view".into()),
        ]);
        assert_eq!(
            out,
            vec![
                Value::Int(2),
                Value::Float(14.5),
                Value::Float(25.0),
                Value::Text("view".into())
            ]
        );
    }

    #[test]
    fn empty_window_gives_zero_average_and_nulls() {
        let out = run(&[Value::Int(0), Value::Float(0.0), Value::Null, Value::Null]);
        assert_eq!(
            out,
            vec![Value::Int(0), Value::Float(0.0), Value::Null, Value::Null]
        );
    }

    #[test]
    fn descriptor_lines_up_aggregations_and_features() {
        let d = {{Type}}::describe();
        assert_eq!(d.name, "{{name}}");
        assert_eq!(d.entity_key, "user_id");
        assert_eq!(d.aggregations.len(), 4);
        assert_eq!(d.features.len(), 4);
        assert_eq!(d.windows[0].length_ms, 600_000);
    }
}
