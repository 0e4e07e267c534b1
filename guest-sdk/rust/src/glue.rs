//! Conversion between the WIT columns and the rows a plugin's logic sees.
//! Used by [`crate::export_plugin!`] and [`crate::FeaturePlugin::compute_batch`]'s
//! default; plugin authors do not call it.

use crate::bindings::wafer::plugin::types as wit;
use crate::columns::{len, type_name};
use crate::describe::{AggregationKind, Descriptor, Feature, ValueType, WindowKind};
use crate::value::{Row, Value};
use crate::FeaturePlugin;

/// The plugin's descriptor in WIT form.
pub fn describe<P: FeaturePlugin>() -> wit::Descriptor {
    to_wit_descriptor(P::describe())
}

/// The export's `compute`: runs `P::compute_batch` and checks that it returned
/// one column per declared feature, of the declared type, with one entry per row.
pub fn compute<P: FeaturePlugin>(input: wit::Batch) -> Result<Vec<wit::Column>, String> {
    let rows = input.rows as usize;
    let out = P::compute_batch(input)?;
    check_columns(&P::describe().features, rows, &out)?;
    Ok(out)
}

fn check_columns(features: &[Feature], rows: usize, out: &[wit::Column]) -> Result<(), String> {
    if out.len() != features.len() {
        return Err(format!(
            "compute_batch returned {} columns, the descriptor declares {} features",
            out.len(),
            features.len()
        ));
    }
    for (column, feature) in out.iter().zip(features) {
        let declared = match feature.kind {
            ValueType::Int64 => "int64",
            ValueType::Float64 => "float64",
            ValueType::Text => "text",
            ValueType::Boolean => "boolean",
        };
        let got = type_name(&column.data);
        if got != declared {
            return Err(format!(
                "feature {}: compute_batch returned a column of type {got}, the descriptor declares {declared}",
                feature.name
            ));
        }
        let n = len(&column.data);
        if n != rows || !(column.valid.is_empty() || column.valid.len() == rows) {
            return Err(format!(
                "feature {}: compute_batch returned {n} values ({} validity flags) for {rows} rows",
                feature.name,
                column.valid.len()
            ));
        }
    }
    Ok(())
}

/// Runs `P::compute` on every row of `input` and returns the feature columns:
/// the default [`FeaturePlugin::compute_batch`].
pub fn compute_rows<P: FeaturePlugin>(input: wit::Batch) -> Result<Vec<wit::Column>, String> {
    let features = P::describe().features;
    let rows = input.rows as usize;
    let mut builders: Vec<ColumnBuilder> = features
        .iter()
        .map(|f| ColumnBuilder::new(f.kind, rows))
        .collect();
    // A text column's values are built once per batch, one per dictionary
    // entry, and lent to each row that has them (moved into its cell, then
    // back): no string is copied per row.
    let mut texts: Vec<Vec<Value>> = input
        .columns
        .iter()
        .map(|c| match &c.data {
            wit::ColumnData::Text(t) => t
                .dictionary
                .iter()
                .map(|s| Value::Text(s.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut lent: Vec<Option<usize>> = vec![None; input.columns.len()];
    let mut cells: Vec<Value> = vec![Value::Null; input.columns.len()];
    for r in 0..rows {
        for (c, column) in input.columns.iter().enumerate() {
            lent[c] = text_code(column, r).filter(|code| *code < texts[c].len());
            cells[c] = match lent[c] {
                Some(code) => std::mem::replace(&mut texts[c][code], Value::Null),
                None => column.value(r),
            };
        }
        let out = P::compute(&Row::new(&cells));
        for (c, code) in lent.iter().enumerate() {
            if let Some(code) = code {
                texts[c][*code] = std::mem::replace(&mut cells[c], Value::Null);
            }
        }
        let out = out.map_err(|e| format!("row {r}: {e}"))?;
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

/// The dictionary code of row `row` of a text column, unless it is not text or null.
fn text_code(column: &wit::Column, row: usize) -> Option<usize> {
    let wit::ColumnData::Text(t) = &column.data else {
        return None;
    };
    if !column.is_valid(row) {
        return None;
    }
    t.codes.get(row).map(|c| *c as usize)
}

/// Dictionaries up to this size are searched in order; larger ones through a hash map.
const SCANNED_DICTIONARY: usize = 16;

/// Accumulates one feature column, checking each value against the declared type.
struct ColumnBuilder {
    data: wit::ColumnData,
    valid: Vec<bool>,
    any_null: bool,
    /// Codes of a text column's dictionary, once it outgrows [`SCANNED_DICTIONARY`].
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
                let code = code_of(&mut t.dictionary, &mut self.dictionary_index, s);
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

/// The code of `s` in `dictionary`, adding it if new. Small dictionaries are
/// scanned; `index` takes over (filled with every entry) once one outgrows that.
fn code_of(
    dictionary: &mut Vec<String>,
    index: &mut std::collections::HashMap<String, u32>,
    s: String,
) -> u32 {
    if dictionary.len() <= SCANNED_DICTIONARY {
        if let Some(code) = dictionary.iter().position(|d| *d == s) {
            return code as u32;
        }
    } else if let Some(code) = index.get(&s) {
        return *code;
    }
    let code = dictionary.len() as u32;
    dictionary.push(s);
    if dictionary.len() > SCANNED_DICTIONARY {
        if index.is_empty() {
            index.extend(dictionary.iter().cloned().zip(0..));
        } else {
            index.insert(dictionary[code as usize].clone(), code);
        }
    }
    code
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

    /// Appends "!" to its text input and returns its length: text in and out.
    struct Echo;

    impl FeaturePlugin for Echo {
        fn describe() -> Descriptor {
            Descriptor::new("echo", "1", "k")
                .input("a", ValueType::Text)
                .sliding_window("w", 1_000)
                .aggregate("w", AggregationKind::Last, Some("a"))
                .feature("shout", ValueType::Text)
                .feature("len", ValueType::Int64)
        }

        fn compute(row: &Row<'_>) -> Result<Vec<Value>, String> {
            let a = row.text(0);
            Ok(vec![
                a.map_or(Value::Null, |s| Value::Text(format!("{s}!"))),
                Value::Int(a.map_or(-1, |s| s.len() as i64)),
            ])
        }
    }

    /// Rows of a text column as plain options (the reference reading).
    fn texts(column: &wit::Column) -> Vec<Option<String>> {
        let wit::ColumnData::Text(t) = &column.data else {
            panic!("not text");
        };
        (0..t.codes.len())
            .map(|r| {
                let valid = column.valid.is_empty() || column.valid[r];
                valid.then(|| t.dictionary[t.codes[r] as usize].clone())
            })
            .collect()
    }

    #[test]
    fn text_cells_are_lent_to_every_row_and_dictionaries_of_any_size_come_back() {
        // 40 distinct values (past the scanned size), repeated, every 7th row null.
        let dictionary: Vec<String> = (0..40).map(|i| format!("v{}", i * 37 % 101)).collect();
        let rows = 300;
        let codes: Vec<u32> = (0..rows).map(|r| (r * r % 40) as u32).collect();
        let valid: Vec<bool> = (0..rows).map(|r| r % 7 != 3).collect();
        let input = wit::Column {
            data: wit::ColumnData::Text(wit::TextColumn {
                dictionary: dictionary.clone(),
                codes: codes.clone(),
            }),
            valid: valid.clone(),
        };
        let batch = wit::Batch {
            rows: rows as u32,
            columns: vec![input],
        };
        let out = compute::<Echo>(batch).unwrap();
        let expected: Vec<Option<String>> = (0..rows)
            .map(|r| valid[r].then(|| format!("{}!", dictionary[codes[r] as usize])))
            .collect();
        assert_eq!(texts(&out[0]), expected);
        let wit::ColumnData::Text(t) = &out[0].data else {
            panic!("not text");
        };
        let mut distinct = t.dictionary.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), t.dictionary.len(), "one entry per value");
        let wit::ColumnData::Int64(lens) = &out[1].data else {
            panic!("not int64");
        };
        let expected: Vec<i64> = (0..rows)
            .map(|r| match valid[r] {
                true => dictionary[codes[r] as usize].len() as i64,
                false => -1,
            })
            .collect();
        assert_eq!(lens, &expected);
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
        assert_eq!(column.value(0), Value::Float(12.5));
        assert_eq!(column.value(1), Value::Null);
    }

    /// Echo's features computed as columns, right or (per `MODE`) wrong.
    struct Columnar;

    thread_local! {
        static MODE: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
    }

    impl FeaturePlugin for Columnar {
        fn describe() -> Descriptor {
            Echo::describe()
        }

        fn compute(row: &Row<'_>) -> Result<Vec<Value>, String> {
            Echo::compute(row)
        }

        fn compute_batch(input: wit::Batch) -> Result<Vec<wit::Column>, String> {
            let rows = input.rows as usize;
            let shout = wit::Column::text(vec!["x".into()], vec![0; rows]);
            let len = wit::Column::int64(vec![1; rows]);
            Ok(match MODE.with(|m| m.get()) {
                0 => vec![shout, len],
                1 => vec![shout],
                2 => vec![len.clone(), len],
                _ => vec![shout, wit::Column::int64(vec![1; rows + 1])],
            })
        }
    }

    #[test]
    fn columns_from_compute_batch_are_checked_against_the_descriptor() {
        let batch = |rows: u32| wit::Batch {
            rows,
            columns: vec![wit::Column::text(vec!["a".into()], vec![0; rows as usize])],
        };
        let run = |mode: u8| {
            MODE.with(|m| m.set(mode));
            compute::<Columnar>(batch(3))
        };
        assert_eq!(run(0).unwrap().len(), 2);
        assert_eq!(
            run(1).unwrap_err(),
            "compute_batch returned 1 columns, the descriptor declares 2 features"
        );
        assert_eq!(
            run(2).unwrap_err(),
            "feature shout: compute_batch returned a column of type int64, the descriptor declares text"
        );
        assert_eq!(
            run(3).unwrap_err(),
            "feature len: compute_batch returned 4 values (0 validity flags) for 3 rows"
        );
        // A plugin without compute_batch runs compute per row.
        let out = compute::<Echo>(batch(2)).unwrap();
        assert_eq!(texts(&out[0]), vec![Some("a!".to_owned()); 2]);
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
