//! Whole batches as columns, for [`crate::FeaturePlugin::compute_batch`]: the
//! fast path of a plugin whose logic is a few operations per column.
//!
//! The types are the WIT contract's own (`wit/`): a [`Batch`] holds one
//! [`Column`] per aggregation, in the descriptor's order, each with one entry
//! per row (the entity that changed); `compute_batch` returns one column per
//! feature, in the descriptor's order, each with one entry per row. A column's
//! `valid` is empty when no row is null, else one flag per row (`false`: null;
//! the data entry under a null is a placeholder).

pub use crate::bindings::wafer::plugin::types::{
    Batch, Column, ColumnData, EventListColumn, EventValues, TextColumn,
};
use crate::value::Value;

impl Column {
    /// An int64 column without nulls.
    pub fn int64(values: Vec<i64>) -> Self {
        Self::all_valid(ColumnData::Int64(values))
    }

    /// A float64 column without nulls.
    pub fn float64(values: Vec<f64>) -> Self {
        Self::all_valid(ColumnData::Float64(values))
    }

    /// A boolean column without nulls.
    pub fn boolean(values: Vec<bool>) -> Self {
        Self::all_valid(ColumnData::Boolean(values))
    }

    /// A text column without nulls: row i holds `dictionary[codes[i]]`.
    pub fn text(dictionary: Vec<String>, codes: Vec<u32>) -> Self {
        Self::all_valid(ColumnData::Text(TextColumn { dictionary, codes }))
    }

    fn all_valid(data: ColumnData) -> Self {
        Self {
            data,
            valid: Vec::new(),
        }
    }

    /// False when row `row` is null (or past the end of `valid`).
    pub fn is_valid(&self, row: usize) -> bool {
        self.valid.is_empty() || self.valid.get(row).copied().unwrap_or(false)
    }

    /// Row `row` as the per-row API reads it: `Value::Null` when null or past the end.
    pub fn value(&self, row: usize) -> Value {
        if !self.is_valid(row) {
            return Value::Null;
        }
        let value = match &self.data {
            ColumnData::Int64(v) => v.get(row).map(|x| Value::Int(*x)),
            ColumnData::Float64(v) => v.get(row).map(|x| Value::Float(*x)),
            ColumnData::Boolean(v) => v.get(row).map(|x| Value::Bool(*x)),
            ColumnData::Text(t) => t
                .codes
                .get(row)
                .and_then(|c| t.dictionary.get(*c as usize))
                .map(|s| Value::Text(s.clone())),
            ColumnData::EventList(l) => events(l, row),
        };
        value.unwrap_or(Value::Null)
    }

    /// The numbers of an int64 column, each null read as `null`; an error
    /// naming the column's type when it is not int64.
    pub fn into_int64s(self, null: i64) -> Result<Vec<i64>, String> {
        match self.data {
            ColumnData::Int64(mut v) => {
                fill_nulls(&mut v, &self.valid, null);
                Ok(v)
            }
            other => Err(format!(
                "expected an int64 column, got {}",
                type_name(&other)
            )),
        }
    }

    /// The numbers of a float64 or int64 column as floats (as `Row::float`
    /// reads them), each null read as `null`; an error naming the column's
    /// type otherwise.
    pub fn into_float64s(self, null: f64) -> Result<Vec<f64>, String> {
        let mut v = match self.data {
            ColumnData::Float64(v) => v,
            ColumnData::Int64(v) => v.into_iter().map(|x| x as f64).collect(),
            other => {
                return Err(format!(
                    "expected a float64 column, got {}",
                    type_name(&other)
                ))
            }
        };
        fill_nulls(&mut v, &self.valid, null);
        Ok(v)
    }
}

/// Sets every null entry of `values` (per `valid`) to `null`.
fn fill_nulls<T: Copy>(values: &mut [T], valid: &[bool], null: T) {
    if valid.is_empty() {
        return;
    }
    for (v, ok) in values.iter_mut().zip(valid) {
        if !ok {
            *v = null;
        }
    }
}

/// Row `row` of an event-list column: (event time, value) pairs, oldest first.
fn events(l: &EventListColumn, row: usize) -> Option<Value> {
    let from = *l.offsets.get(row)? as usize;
    let to = *l.offsets.get(row + 1)? as usize;
    let value = |i: usize| match &l.values {
        EventValues::Int64(v) => v.get(i).map(|x| Value::Int(*x)),
        EventValues::Float64(v) => v.get(i).map(|x| Value::Float(*x)),
        EventValues::Boolean(v) => v.get(i).map(|x| Value::Bool(*x)),
        EventValues::Text(t) => t
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

/// The WIT name of a column's type.
pub(crate) fn type_name(data: &ColumnData) -> &'static str {
    match data {
        ColumnData::Int64(_) => "int64",
        ColumnData::Float64(_) => "float64",
        ColumnData::Text(_) => "text",
        ColumnData::Boolean(_) => "boolean",
        ColumnData::EventList(_) => "event-list",
    }
}

/// Number of entries of a column's data.
pub(crate) fn len(data: &ColumnData) -> usize {
    match data {
        ColumnData::Int64(v) => v.len(),
        ColumnData::Float64(v) => v.len(),
        ColumnData::Boolean(v) => v.len(),
        ColumnData::Text(t) => t.codes.len(),
        ColumnData::EventList(l) => l.offsets.len().saturating_sub(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_read_as_the_given_value() {
        let c = Column {
            data: ColumnData::Int64(vec![5, 99, 7]),
            valid: vec![true, false, true],
        };
        assert_eq!(c.value(1), Value::Null);
        assert_eq!(c.into_int64s(0).unwrap(), vec![5, 0, 7]);
        let c = Column {
            data: ColumnData::Int64(vec![2, 3]),
            valid: vec![false, true],
        };
        assert_eq!(c.into_float64s(-1.0).unwrap(), vec![-1.0, 3.0]);
        let c = Column::float64(vec![0.5]);
        assert_eq!(c.into_float64s(0.0).unwrap(), vec![0.5]);
        let err = Column::text(vec!["a".into()], vec![0])
            .into_int64s(0)
            .unwrap_err();
        assert_eq!(err, "expected an int64 column, got text");
    }

    #[test]
    fn event_lists_decode_per_row() {
        let column = Column {
            data: ColumnData::EventList(EventListColumn {
                offsets: vec![0, 2, 2, 3],
                times: vec![10, 11, 20],
                values: EventValues::Text(TextColumn {
                    dictionary: vec!["a".into(), "b".into()],
                    codes: vec![1, 0, 1],
                }),
            }),
            valid: Vec::new(),
        };
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            column.value(0),
            Value::Events(vec![(10, text("b")), (11, text("a"))])
        );
        assert_eq!(column.value(1), Value::Events(Vec::new()));
        assert_eq!(column.value(2), Value::Events(vec![(20, text("b"))]));
        assert_eq!(column.value(3), Value::Null);
        assert_eq!(len(&column.data), 3);
    }
}
