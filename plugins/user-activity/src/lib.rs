//! `user-activity`: the features of the Python loop that Wafer replaces.
//!
//! - Entity: `user_id`.
//! - Inputs: `action` (text), `value` (float64).
//! - Window: `1h`, sliding, 3,600,000 ms of event time.
//! - Outputs: `event_count_1h` (int64), `unique_actions_1h` (int64),
//!   `avg_value_1h` (float64, sum / count, 0.0 when empty),
//!   `last_action` (text, null when empty; latest by event time).
//!
//! `compute` states the logic per row; `compute_batch` does the same on whole
//! columns (the host calls that one), and a test checks the two agree.

use wafer_guest::columns::{Batch, Column, ColumnData};
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

    fn compute_batch(input: Batch) -> Result<Vec<Column>, String> {
        let [count, unique, sum, last]: [Column; 4] = input
            .columns
            .try_into()
            .map_err(|c: Vec<Column>| format!("expected 4 aggregation columns, got {}", c.len()))?;
        let count = count.into_int64s(0)?;
        let unique = unique.into_int64s(0)?;
        let avg = sum
            .into_float64s(0.0)?
            .iter()
            .zip(&count)
            .map(|(sum, n)| if *n > 0 { sum / *n as f64 } else { 0.0 })
            .collect();
        // The latest action is the aggregation itself: its column (strings,
        // codes and nulls) passes through.
        if !matches!(last.data, ColumnData::Text(_)) {
            return Err("expected a text column for the last action".into());
        }
        Ok(vec![
            Column::int64(count),
            Column::int64(unique),
            Column::float64(avg),
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

    /// Row `r` of every column, as the per-row API reads it.
    fn row_values(columns: &[Column], r: usize) -> Vec<Value> {
        columns.iter().map(|c| c.value(r)).collect()
    }

    #[test]
    fn columns_agree_with_the_per_row_logic() {
        // Random batches (a small linear congruential generator): counts with
        // zeros, sums of any sign, nulls in every column, a dictionary with
        // an unused entry.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for rows in [0usize, 1, 7, 300] {
            let mut valid = |every: u64| -> Vec<bool> {
                match every {
                    0 => Vec::new(),
                    _ => (0..rows).map(|_| next(every) != 0).collect(),
                }
            };
            let (v0, v1, v2, v3) = (valid(0), valid(9), valid(5), valid(4));
            let mut ints = |n: u64| (0..rows).map(|_| next(n) as i64).collect::<Vec<_>>();
            let (count, unique) = (ints(6), ints(4));
            let sum: Vec<f64> = ints(2000).iter().map(|x| *x as f64 / 8.0 - 100.0).collect();
            let codes: Vec<u32> = ints(3).iter().map(|c| *c as u32).collect();
            let batch = Batch {
                rows: rows as u32,
                columns: vec![
                    Column {
                        data: ColumnData::Int64(count),
                        valid: v0,
                    },
                    Column {
                        data: ColumnData::Int64(unique),
                        valid: v1,
                    },
                    Column {
                        data: ColumnData::Float64(sum),
                        valid: v2,
                    },
                    Column {
                        data: ColumnData::Text(wafer_guest::columns::TextColumn {
                            dictionary: vec![
                                "view".into(),
                                "buy".into(),
                                "x".into(),
                                "unused".into(),
                            ],
                            codes,
                        }),
                        valid: v3,
                    },
                ],
            };
            let by_rows = wafer_guest::glue::compute_rows::<UserActivity>(batch.clone()).unwrap();
            let by_columns = UserActivity::compute_batch(batch).unwrap();
            for r in 0..rows {
                assert_eq!(
                    row_values(&by_columns, r),
                    row_values(&by_rows, r),
                    "row {r}"
                );
            }
            assert!(by_columns.iter().all(|c| c.value(rows) == Value::Null));
        }
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
