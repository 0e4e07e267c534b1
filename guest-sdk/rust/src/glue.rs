//! Conversion between the WIT columns and the rows a plugin's logic sees.
//! Used by [`crate::export_plugin!`]; plugin authors do not call it.

use crate::bindings::wafer::plugin::types as wit;
use crate::describe::{AggregationKind, Descriptor, ValueType, WindowKind};
use crate::value::{Row, Value};
use crate::FeaturePlugin;

/// The plugin's descriptor in WIT form.
pub fn describe<P: FeaturePlugin>() -> wit::Descriptor {
    to_wit_descriptor(P::describe())
}

/// Runs `P::compute` on every row of `input` and returns the feature columns.
pub fn compute<P: FeaturePlugin>(input: wit::Batch) -> Result<Vec<wit::Column>, String> {
    let features = P::describe().features;
    let rows = input.rows as usize;
    let mut builders: Vec<ColumnBuilder> = features
        .iter()
        .map(|f| ColumnBuilder::new(f.kind, rows))
        .collect();
    let mut cells = Vec::with_capacity(input.columns.len());
    for r in 0..rows {
        cells.clear();
        cells.extend(input.columns.iter().map(|c| cell(c, r)));
        let out = P::compute(&Row::new(&cells)).map_err(|e| format!("row {r}: {e}"))?;
        if out.len() != features.len() {
            return Err(format!(
                "row {r}: compute returned {} values, the descriptor declares {} features",
                out.len(),
                features.len()
            ));
        }
        for ((value, builder), feature) in out.into_iter().zip(&mut builders).zip(&features) {
            builder
                .push(value)
                .map_err(|e| format!("row {r}, feature {}: {e}", feature.name))?;
        }
    }
    Ok(builders.into_iter().map(ColumnBuilder::finish).collect())
}

fn cell(column: &wit::Column, row: usize) -> Value {
    if !column.valid.is_empty() && !column.valid.get(row).copied().unwrap_or(false) {
        return Value::Null;
    }
    let value = match &column.data {
        wit::ColumnData::Int64(v) => v.get(row).map(|x| Value::Int(*x)),
        wit::ColumnData::Float64(v) => v.get(row).map(|x| Value::Float(*x)),
        wit::ColumnData::Boolean(v) => v.get(row).map(|x| Value::Bool(*x)),
        wit::ColumnData::Text(t) => t
            .codes
            .get(row)
            .and_then(|c| t.dictionary.get(*c as usize))
            .map(|s| Value::Text(s.clone())),
        wit::ColumnData::EventList(l) => events(l, row),
    };
    value.unwrap_or(Value::Null)
}

/// Row `row` of an event-list column: (event time, value) pairs, oldest first.
fn events(l: &wit::EventListColumn, row: usize) -> Option<Value> {
    let from = *l.offsets.get(row)? as usize;
    let to = *l.offsets.get(row + 1)? as usize;
    let value = |i: usize| match &l.values {
        wit::EventValues::Int64(v) => v.get(i).map(|x| Value::Int(*x)),
        wit::EventValues::Float64(v) => v.get(i).map(|x| Value::Float(*x)),
        wit::EventValues::Boolean(v) => v.get(i).map(|x| Value::Bool(*x)),
        wit::EventValues::Text(t) => t
            .codes
            .get(i)
            .and_then(|c| t.dictionary.get(*c as usize))
            .map(|s| Value::Text(s.clone())),
    };
    (from..to)
        .map(|i| Some((*l.times.get(i)?, value(i)?)))
        .collect::<Option<Vec<_>>>()
        .map(Value::Events)
}

/// Accumulates one feature column, checking each value against the declared type.
struct ColumnBuilder {
    data: wit::ColumnData,
    valid: Vec<bool>,
    any_null: bool,
    dictionary_index: std::collections::HashMap<String, u32>,
}

impl ColumnBuilder {
    fn new(kind: ValueType, rows: usize) -> Self {
        let data = match kind {
            ValueType::Int64 => wit::ColumnData::Int64(Vec::with_capacity(rows)),
            ValueType::Float64 => wit::ColumnData::Float64(Vec::with_capacity(rows)),
            ValueType::Boolean => wit::ColumnData::Boolean(Vec::with_capacity(rows)),
            ValueType::Text => wit::ColumnData::Text(wit::TextColumn {
                dictionary: Vec::new(),
                codes: Vec::with_capacity(rows),
            }),
        };
        Self {
            data,
            valid: Vec::with_capacity(rows),
            any_null: false,
            dictionary_index: std::collections::HashMap::new(),
        }
    }

    fn push(&mut self, value: Value) -> Result<(), String> {
        let is_null = matches!(value, Value::Null);
        match (&mut self.data, value) {
            (wit::ColumnData::Int64(v), Value::Int(x)) => v.push(x),
            (wit::ColumnData::Int64(v), Value::Null) => v.push(0),
            (wit::ColumnData::Float64(v), Value::Float(x)) => v.push(x),
            (wit::ColumnData::Float64(v), Value::Int(x)) => v.push(x as f64),
            (wit::ColumnData::Float64(v), Value::Null) => v.push(0.0),
            (wit::ColumnData::Boolean(v), Value::Bool(x)) => v.push(x),
            (wit::ColumnData::Boolean(v), Value::Null) => v.push(false),
            (wit::ColumnData::Text(t), Value::Text(s)) => {
                let next = t.dictionary.len() as u32;
                let code = *self.dictionary_index.entry(s).or_insert_with_key(|k| {
                    t.dictionary.push(k.clone());
                    next
                });
                t.codes.push(code);
            }
            (wit::ColumnData::Text(t), Value::Null) => t.codes.push(0),
            (data, value) => {
                return Err(format!(
                    "value {value:?} does not match the declared type {}",
                    type_name(data)
                ))
            }
        }
        self.any_null |= is_null;
        self.valid.push(!is_null);
        Ok(())
    }

    fn finish(self) -> wit::Column {
        wit::Column {
            data: self.data,
            valid: if self.any_null {
                self.valid
            } else {
                Vec::new()
            },
        }
    }
}

fn type_name(data: &wit::ColumnData) -> &'static str {
    match data {
        wit::ColumnData::Int64(_) => "int64",
        wit::ColumnData::Float64(_) => "float64",
        wit::ColumnData::Text(_) => "text",
        wit::ColumnData::Boolean(_) => "boolean",
        wit::ColumnData::EventList(_) => "event-list",
    }
}

fn to_wit_type(kind: ValueType) -> wit::ValueType {
    match kind {
        ValueType::Int64 => wit::ValueType::Int64,
        ValueType::Float64 => wit::ValueType::Float64,
        ValueType::Text => wit::ValueType::Text,
        ValueType::Boolean => wit::ValueType::Boolean,
    }
}

fn to_wit_aggregation(kind: AggregationKind) -> wit::AggregationKind {
    match kind {
        AggregationKind::Count => wit::AggregationKind::Count,
        AggregationKind::Sum => wit::AggregationKind::Sum,
        AggregationKind::Mean => wit::AggregationKind::Mean,
        AggregationKind::Min => wit::AggregationKind::Min,
        AggregationKind::Max => wit::AggregationKind::Max,
        AggregationKind::DistinctCount => wit::AggregationKind::DistinctCount,
        AggregationKind::First => wit::AggregationKind::First,
        AggregationKind::Last => wit::AggregationKind::Last,
        AggregationKind::Variance => wit::AggregationKind::Variance,
        AggregationKind::Stddev => wit::AggregationKind::Stddev,
        AggregationKind::ApproxQuantile => wit::AggregationKind::ApproxQuantile,
        AggregationKind::Events => wit::AggregationKind::Events,
    }
}

fn to_wit_window_kind(kind: WindowKind) -> wit::WindowKind {
    match kind {
        WindowKind::Sliding => wit::WindowKind::Sliding,
        WindowKind::Tumbling => wit::WindowKind::Tumbling,
        WindowKind::Hopping => wit::WindowKind::Hopping,
        WindowKind::Session => wit::WindowKind::Session,
    }
}

fn to_wit_descriptor(d: Descriptor) -> wit::Descriptor {
    wit::Descriptor {
        name: d.name,
        version: d.version,
        entity_key: d.entity_key,
        inputs: d
            .inputs
            .into_iter()
            .map(|i| wit::InputField {
                name: i.name,
                kind: to_wit_type(i.kind),
            })
            .collect(),
        windows: d
            .windows
            .into_iter()
            .map(|w| wit::WindowSpec {
                name: w.name,
                kind: to_wit_window_kind(w.kind),
                length_ms: w.length_ms,
                hop_ms: w.hop_ms,
                gap_ms: w.gap_ms,
                grace_ms: w.grace_ms,
                early_results: w.early_results,
            })
            .collect(),
        aggregations: d
            .aggregations
            .into_iter()
            .map(|a| wit::AggregationSpec {
                window: a.window,
                kind: to_wit_aggregation(a.kind),
                field: a.field,
                quantile: a.quantile,
                max_events: a.max_events,
            })
            .collect(),
        features: d
            .features
            .into_iter()
            .map(|f| wit::FeatureSpec {
                name: f.name,
                kind: to_wit_type(f.kind),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe::Window;

    #[test]
    fn event_lists_decode_per_row() {
        let column = wit::Column {
            data: wit::ColumnData::EventList(wit::EventListColumn {
                offsets: vec![0, 2, 2, 3],
                times: vec![10, 11, 20],
                values: wit::EventValues::Text(wit::TextColumn {
                    dictionary: vec!["a".into(), "b".into()],
                    codes: vec![1, 0, 1],
                }),
            }),
            valid: Vec::new(),
        };
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            cell(&column, 0),
            Value::Events(vec![(10, text("b")), (11, text("a"))])
        );
        assert_eq!(cell(&column, 1), Value::Events(Vec::new()));
        assert_eq!(cell(&column, 2), Value::Events(vec![(20, text("b"))]));
        assert_eq!(cell(&column, 3), Value::Null);
    }

    #[test]
    fn quantiles_reach_the_wit_descriptor_and_read_as_floats() {
        let d = Descriptor::new("p", "1", "k")
            .sliding_window("1h", 3_600_000)
            .quantile("1h", "value", 0.95)
            .aggregate("1h", AggregationKind::DistinctCount, Some("value"));
        let a = to_wit_descriptor(d).aggregations;
        assert!(matches!(a[0].kind, wit::AggregationKind::ApproxQuantile));
        assert_eq!(
            (a[0].field.as_deref(), a[0].quantile, a[0].max_events),
            (Some("value"), Some(0.95), None)
        );
        assert!(matches!(a[1].kind, wit::AggregationKind::DistinctCount));
        assert_eq!(a[1].quantile, None);
        // The host's column: a float64 per row, null on an empty window.
        let column = wit::Column {
            data: wit::ColumnData::Float64(vec![12.5, 0.0]),
            valid: vec![true, false],
        };
        assert_eq!(cell(&column, 0), Value::Float(12.5));
        assert_eq!(cell(&column, 1), Value::Null);
    }

    #[test]
    fn window_kinds_reach_the_wit_descriptor() {
        let d = Descriptor::new("p", "1", "k")
            .window(Window::tumbling("1m", 60_000).grace(5_000))
            .window(Window::hopping("1h", 3_600_000, 60_000).early_results())
            .window(Window::session("s", 1_800_000, 3_600_000));
        let w = to_wit_descriptor(d).windows;
        assert!(matches!(w[0].kind, wit::WindowKind::Tumbling));
        assert_eq!((w[0].grace_ms, w[0].early_results), (5_000, false));
        assert!(matches!(w[1].kind, wit::WindowKind::Hopping));
        assert_eq!((w[1].hop_ms, w[1].early_results), (Some(60_000), true));
        assert!(matches!(w[2].kind, wit::WindowKind::Session));
        assert_eq!((w[2].gap_ms, w[2].length_ms), (Some(1_800_000), 3_600_000));
    }
}
