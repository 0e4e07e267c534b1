//! Conversion between the WIT columns and the rows a plugin's logic sees.
//! Used by [`crate::export_plugin!`]; plugin authors do not call it.

use crate::bindings::wafer::plugin::types as wit;
use crate::describe::{AggregationKind, Descriptor, ValueType};
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
    };
    value.unwrap_or(Value::Null)
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
                kind: wit::WindowKind::Sliding,
                length_ms: w.length_ms,
            })
            .collect(),
        aggregations: d
            .aggregations
            .into_iter()
            .map(|a| wit::AggregationSpec {
                window: a.window,
                kind: to_wit_aggregation(a.kind),
                field: a.field,
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
