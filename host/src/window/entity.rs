//! One entity's window state: its in-window events, sorted by event time, and
//! the incremental aggregates of each window over them.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::plan::Plan;
use super::sum::RunningSum;
use crate::plugin::{AggregationKind, ValueType};

/// One aggregation value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggCell {
    Null,
    Int(i64),
    Float(f64),
    /// A stored field value (first/last), typed by the aggregation's field.
    Stored(u64),
}

/// Incremental state of one window: it covers the newest `count` events.
#[derive(Debug, Clone, Default)]
struct WindowAgg {
    count: usize,
    sums: Vec<RunningSum>,
    distinct: Vec<FxHashMap<u64, u32>>,
}

/// An entity's events in its longest window and the aggregates of every window.
#[derive(Debug, Clone)]
pub struct EntityWindow {
    /// Event times, ascending; equal times keep arrival order.
    times: VecDeque<i64>,
    /// One column per stored field, parallel to `times`.
    cells: Vec<VecDeque<u64>>,
    windows: Vec<WindowAgg>,
}

/// Reads a stored numeric cell as a float.
pub fn numeric(cell: u64, kind: ValueType) -> f64 {
    match kind {
        ValueType::Int64 => cell as i64 as f64,
        _ => f64::from_bits(cell),
    }
}

impl EntityWindow {
    pub fn new(plan: &Plan) -> Self {
        Self {
            times: VecDeque::new(),
            cells: vec![VecDeque::new(); plan.stored.len()],
            windows: (0..plan.windows.len())
                .map(|w| WindowAgg {
                    count: 0,
                    sums: vec![RunningSum::default(); plan.sum_slots[w].len()],
                    distinct: vec![FxHashMap::default(); plan.distinct_slots[w].len()],
                })
                .collect(),
        }
    }

    /// True when no event is left in any window.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Events held (those in the longest window).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Inserts an event at time `t` (not late) with stream time `now >= t`.
    pub fn insert(&mut self, plan: &Plan, t: i64, cells: &[u64], now: i64) {
        let pos = self.times.partition_point(|x| *x <= t);
        self.times.insert(pos, t);
        for (column, cell) in self.cells.iter_mut().zip(cells) {
            column.insert(pos, *cell);
        }
        for (w, length) in plan.windows.iter().enumerate() {
            if t > now - length {
                self.windows[w].count += 1;
                self.account(plan, w, cells, 1);
            }
        }
    }

    /// Moves stream time to `now`: events that left a window leave its
    /// aggregates; events that left every window are dropped. Returns whether
    /// anything changed.
    pub fn advance(&mut self, plan: &Plan, now: i64) -> bool {
        let mut changed = false;
        let mut row = vec![0u64; self.cells.len()];
        for (w, length) in plan.windows.iter().enumerate() {
            while self.windows[w].count > 0 {
                let i = self.times.len() - self.windows[w].count;
                if self.times[i] > now - length {
                    break;
                }
                for (cell, column) in row.iter_mut().zip(&self.cells) {
                    *cell = column[i];
                }
                self.account(plan, w, &row, -1);
                self.windows[w].count -= 1;
                changed = true;
            }
        }
        let keep = self.windows.iter().map(|w| w.count).max().unwrap_or(0);
        while self.times.len() > keep {
            self.times.pop_front();
            for column in &mut self.cells {
                column.pop_front();
            }
        }
        changed
    }

    /// The earliest stream time at which some event leaves some window.
    pub fn next_change(&self, plan: &Plan) -> Option<i64> {
        plan.windows
            .iter()
            .zip(&self.windows)
            .filter(|(_, agg)| agg.count > 0)
            .map(|(length, agg)| self.times[self.times.len() - agg.count] + length)
            .min()
    }

    fn account(&mut self, plan: &Plan, w: usize, cells: &[u64], sign: i32) {
        let agg = &mut self.windows[w];
        for (sum, slot) in agg.sums.iter_mut().zip(&plan.sum_slots[w]) {
            let x = numeric(cells[*slot], plan.stored[*slot].1);
            sum.add(if sign > 0 { x } else { -x });
        }
        for (map, slot) in agg.distinct.iter_mut().zip(&plan.distinct_slots[w]) {
            let key = cells[*slot];
            if sign > 0 {
                *map.entry(key).or_insert(0) += 1;
            } else if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    /// The value of aggregation `a` of the plan.
    pub fn aggregate(&self, plan: &Plan, a: usize) -> AggCell {
        let op = &plan.aggs[a];
        let agg = &self.windows[op.window];
        let start = self.times.len() - agg.count;
        let column = op.slot.map(|s| &self.cells[s]);
        let kind = op.field_type.unwrap_or(ValueType::Float64);
        match op.kind {
            AggregationKind::Count => AggCell::Int(agg.count as i64),
            AggregationKind::Sum => AggCell::Float(agg.sums[op.state].value()),
            AggregationKind::Mean if agg.count == 0 => AggCell::Null,
            AggregationKind::Mean => AggCell::Float(agg.sums[op.state].value() / agg.count as f64),
            AggregationKind::DistinctCount => AggCell::Int(agg.distinct[op.state].len() as i64),
            AggregationKind::Min | AggregationKind::Max => {
                let values = column
                    .into_iter()
                    .flat_map(|c| c.range(start..))
                    .map(|c| numeric(*c, kind));
                let best = if op.kind == AggregationKind::Min {
                    values.reduce(f64::min)
                } else {
                    values.reduce(f64::max)
                };
                best.map_or(AggCell::Null, AggCell::Float)
            }
            AggregationKind::First if agg.count == 0 => AggCell::Null,
            AggregationKind::First => column.map_or(AggCell::Null, |c| AggCell::Stored(c[start])),
            AggregationKind::Last if agg.count == 0 => AggCell::Null,
            AggregationKind::Last => column
                .and_then(|c| c.back())
                .map_or(AggCell::Null, |c| AggCell::Stored(*c)),
        }
    }
}
