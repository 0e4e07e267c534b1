//! The aggregation plan: what each event stores and which incremental state
//! each window keeps, derived once from a plugin's descriptor.

use crate::plugin::{AggregationKind, Descriptor, ValueType};

/// One aggregation column, resolved to indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct AggOp {
    pub kind: AggregationKind,
    /// Window index.
    pub window: usize,
    /// Stored-field slot (none for `count`).
    pub slot: Option<usize>,
    /// Type of the aggregated field.
    pub field_type: Option<ValueType>,
    /// Index into the window's sums (sum, mean) or distinct maps (distinct-count).
    pub state: usize,
}

/// What the window state keeps, for one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Window lengths in ms, in descriptor order.
    pub windows: Vec<i64>,
    /// The longest window: an event older than stream time minus this is late.
    pub max_window: i64,
    /// Stored fields: index into the decoded event's fields, and type.
    pub stored: Vec<(usize, ValueType)>,
    /// Per window: stored slots whose running sum it keeps.
    pub sum_slots: Vec<Vec<usize>>,
    /// Per window: stored slots whose distinct values it counts.
    pub distinct_slots: Vec<Vec<usize>>,
    /// The aggregation columns handed to the plugin, in descriptor order.
    pub aggs: Vec<AggOp>,
}

impl Plan {
    /// Builds the plan of a validated descriptor.
    pub fn new(d: &Descriptor) -> Self {
        let windows: Vec<i64> = d.windows.iter().map(|w| w.length_ms as i64).collect();
        let max_window = windows.iter().copied().max().unwrap_or(1);
        let mut stored: Vec<(usize, ValueType)> = Vec::new();
        let mut sum_slots = vec![Vec::new(); windows.len()];
        let mut distinct_slots = vec![Vec::new(); windows.len()];
        let mut aggs = Vec::with_capacity(d.aggregations.len());
        for a in &d.aggregations {
            let window = d
                .windows
                .iter()
                .position(|w| w.name == a.window)
                .expect("validated descriptor: window exists");
            let field = a.field.as_ref().map(|f| {
                let input = d
                    .inputs
                    .iter()
                    .position(|i| &i.name == f)
                    .expect("validated descriptor: field exists");
                let kind = d.inputs[input].kind;
                let slot = match stored.iter().position(|(i, _)| *i == input) {
                    Some(s) => s,
                    None => {
                        stored.push((input, kind));
                        stored.len() - 1
                    }
                };
                (slot, kind)
            });
            let slot = field.map(|(s, _)| s);
            let state = match (a.kind, slot) {
                (AggregationKind::Sum | AggregationKind::Mean, Some(s)) => {
                    index_of_or_push(&mut sum_slots[window], s)
                }
                (AggregationKind::DistinctCount, Some(s)) => {
                    index_of_or_push(&mut distinct_slots[window], s)
                }
                _ => 0,
            };
            aggs.push(AggOp {
                kind: a.kind,
                window,
                slot,
                field_type: field.map(|(_, k)| k),
                state,
            });
        }
        Self {
            windows,
            max_window,
            stored,
            sum_slots,
            distinct_slots,
            aggs,
        }
    }
}

fn index_of_or_push(v: &mut Vec<usize>, x: usize) -> usize {
    match v.iter().position(|y| *y == x) {
        Some(i) => i,
        None => {
            v.push(x);
            v.len() - 1
        }
    }
}
