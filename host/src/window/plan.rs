//! The aggregation plan: what each event stores, the shape of each window and
//! which incremental state it keeps, derived once from a plugin's descriptor.

use crate::plugin::{AggregationKind, Descriptor, ValueType, WindowKind};

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
    /// Index into the window's sums (sum, mean), moments (variance, stddev) or
    /// distinct maps (distinct-count); sliding windows only.
    pub state: usize,
    /// events: the most events handed per row (the newest); 0 for the other kinds.
    pub max_events: usize,
    /// approx-quantile: the quantile, in [0, 1]; 0 for the other kinds.
    pub quantile: f64,
}

/// How a window's instances are laid out in time (all times in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// (T - length, T], T the stream time.
    Sliding { length: i64 },
    /// Instances [k * hop, k * hop + length); tumbling when hop = length.
    Aligned {
        length: i64,
        hop: i64,
        grace: i64,
        early: bool,
    },
    /// Sessions [first, last + gap), visible until `retention` after their end.
    Session {
        gap: i64,
        retention: i64,
        grace: i64,
        early: bool,
    },
}

/// What the window state keeps, for one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every window's shape, in descriptor order.
    pub shapes: Vec<Shape>,
    /// Allowed out-of-orderness: watermark = stream time minus this.
    pub out_of_orderness: i64,
    /// Stored fields: index into the decoded event's fields, and type.
    pub stored: Vec<(usize, ValueType)>,
    /// Per window: stored slots whose running sum it keeps (sliding only).
    pub sum_slots: Vec<Vec<usize>>,
    /// Per window: stored slots whose running moments it keeps (sliding only).
    pub moment_slots: Vec<Vec<usize>>,
    /// Per window: stored slots whose distinct values it counts (sliding only).
    pub distinct_slots: Vec<Vec<usize>>,
    /// The aggregation columns handed to the plugin, in descriptor order.
    pub aggs: Vec<AggOp>,
    /// The tiled windows (none unless [`Plan::with_tiling`] says so).
    pub tiles: super::tiles::TilePlan,
    /// distinct-count: distinct values counted exactly; beyond, estimated.
    pub distinct_exact_limit: usize,
    /// Per window, then one past the last: where a sliding window's state
    /// starts in an entity's slide words (its count, then 2 words per running
    /// sum and 5 per running moments; none for other windows).
    pub slide_words: Vec<usize>,
    /// Per window, then one past the last: the index of a sliding window's
    /// first distinct-count state among an entity's.
    pub slide_distinct: Vec<usize>,
}

impl Plan {
    /// How far before stream time an event can still count in some window, in
    /// ms: the longest sliding window, aligned window plus its grace, or
    /// session retention plus its grace, plus the allowed out-of-orderness. (A
    /// session chained by events closer than its gap can reach further back.)
    pub fn reach_ms(&self) -> i64 {
        let longest = self
            .shapes
            .iter()
            .map(|shape| match *shape {
                Shape::Sliding { length } => length,
                Shape::Aligned { length, grace, .. } => length + grace,
                Shape::Session {
                    retention, grace, ..
                } => retention + grace,
            })
            .max()
            .unwrap_or(0);
        longest + self.out_of_orderness
    }

    /// Builds the plan of a validated descriptor, with no out-of-orderness.
    pub fn new(d: &Descriptor) -> Self {
        let shapes: Vec<Shape> = d
            .windows
            .iter()
            .map(|w| {
                let length = w.length_ms as i64;
                let grace = w.grace_ms as i64;
                match w.kind {
                    WindowKind::Sliding => Shape::Sliding { length },
                    WindowKind::Tumbling => Shape::Aligned {
                        length,
                        hop: length,
                        grace,
                        early: w.early_results,
                    },
                    WindowKind::Hopping => Shape::Aligned {
                        length,
                        hop: w.hop_ms.unwrap_or(w.length_ms) as i64,
                        grace,
                        early: w.early_results,
                    },
                    WindowKind::Session => Shape::Session {
                        gap: w.gap_ms.unwrap_or(1) as i64,
                        retention: length,
                        grace,
                        early: w.early_results,
                    },
                }
            })
            .collect();
        let n = shapes.len();
        let mut stored: Vec<(usize, ValueType)> = Vec::new();
        let mut sum_slots = vec![Vec::new(); n];
        let mut moment_slots = vec![Vec::new(); n];
        let mut distinct_slots = vec![Vec::new(); n];
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
                (AggregationKind::Variance | AggregationKind::Stddev, Some(s)) => {
                    index_of_or_push(&mut moment_slots[window], s)
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
                max_events: a.max_events.unwrap_or(0) as usize,
                quantile: a.quantile.unwrap_or(0.0),
            });
        }
        let (mut slide_words, mut slide_distinct) = (vec![0], vec![0]);
        for (w, shape) in shapes.iter().enumerate() {
            let sliding = matches!(shape, Shape::Sliding { .. });
            let words = 1 + 2 * sum_slots[w].len() + 5 * moment_slots[w].len();
            slide_words.push(slide_words[w] + if sliding { words } else { 0 });
            let distinct = if sliding { distinct_slots[w].len() } else { 0 };
            slide_distinct.push(slide_distinct[w] + distinct);
        }
        Self {
            shapes,
            out_of_orderness: 0,
            stored,
            sum_slots,
            moment_slots,
            distinct_slots,
            aggs,
            tiles: super::tiles::TilePlan::default(),
            distinct_exact_limit: super::sketch::DEFAULT_DISTINCT_EXACT_LIMIT,
            slide_words,
            slide_distinct,
        }
    }

    /// Sets the allowed out-of-orderness (watermark = stream time minus `ms`).
    pub fn with_out_of_orderness(mut self, ms: i64) -> Self {
        self.out_of_orderness = ms.max(0);
        self
    }

    /// True when some untiled window is tumbling, hopping or session: those
    /// read the watermark each held event arrived at (sliding windows never
    /// do; tiled ones decide when the event arrives).
    pub fn keeps_marks(&self) -> bool {
        self.shapes
            .iter()
            .enumerate()
            .any(|(w, s)| !matches!(s, Shape::Sliding { .. }) && self.tiles.index(w).is_none())
    }

    /// Sets how many distinct values `distinct-count` counts exactly (beyond,
    /// it estimates; see `docs/semantics.md`).
    pub fn with_distinct_exact_limit(mut self, limit: usize) -> Self {
        self.distinct_exact_limit = limit;
        self
    }

    /// The longest sliding window, if any.
    pub fn max_sliding(&self) -> Option<i64> {
        self.shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Sliding { length } => Some(*length),
                _ => None,
            })
            .max()
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
