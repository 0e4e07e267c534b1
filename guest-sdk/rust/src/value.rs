//! The plain values a plugin's logic reads and returns.

/// One cell: an aggregation handed in or a feature handed back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    /// Raw events of a window (an `events` aggregation): (event time, value), oldest first.
    Events(Vec<(i64, Value)>),
}

/// One entity's aggregations, in the order the descriptor declared them.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    cells: &'a [Value],
}

impl<'a> Row<'a> {
    /// A row over `cells`; plugins use this to unit-test their logic natively.
    pub fn new(cells: &'a [Value]) -> Self {
        Self { cells }
    }

    /// The raw cell `i`, `None` past the end.
    pub fn get(&self, i: usize) -> Option<&'a Value> {
        self.cells.get(i)
    }

    /// Cell `i` as an integer, `None` when null or of another type.
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.cells.get(i)? {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// Cell `i` as a float (`Float` or `Int`), `None` when null or of another type.
    pub fn float(&self, i: usize) -> Option<f64> {
        match self.cells.get(i)? {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// Cell `i` as text, `None` when null or of another type.
    pub fn text(&self, i: usize) -> Option<&'a str> {
        match self.cells.get(i)? {
            Value::Text(v) => Some(v.as_str()),
            _ => None,
        }
    }

    /// Cell `i` as a boolean, `None` when null or of another type.
    pub fn bool(&self, i: usize) -> Option<bool> {
        match self.cells.get(i)? {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// Cell `i` as raw events (time, value), `None` when null or of another type.
    pub fn events(&self, i: usize) -> Option<&'a [(i64, Value)]> {
        match self.cells.get(i)? {
            Value::Events(v) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when the row has no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}
