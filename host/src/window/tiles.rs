//! Tiles: bounded state for long windows.
//!
//! A sliding window of length L at least `tile_min_window_ms` long is kept as
//! **tiles** of `tile_ms` (g): tile k holds mergeable partial aggregates of
//! the window's events with time in [k·g, (k+1)·g). At stream time T the window
//! covers the L/g tiles ending with the one holding T: an event at t counts
//! while `t.div_euclid(g) > T.div_euclid(g) - L/g`, i.e. t ≥ ⌊T/g⌋·g + g − L.
//! The window so spans between L − g + 1 ms and L ms of event time, and is
//! exactly (T − L, T] when T + 1 is a multiple of g. Its oldest tile leaves
//! whole when T reaches its end plus L (`docs/semantics.md` has a timeline).
//!
//! A tumbling or hopping window at least `tile_min_window_ms` long keeps one
//! partial aggregate per **instance** instead of its events: an event is added
//! to every instance holding it that is still open when it arrives (the rule
//! of untiled windows, decided once), so results are exact, with no edge
//! effect. A hopping window of length L and hop S so updates up to L/S
//! partials per event and keeps up to L/S + 1 per entity.
//!
//! A session window whose `length-ms` (how long a session stays visible) is
//! at least `tile_min_window_ms` keeps one partial aggregate per session:
//! sessions merged by an event merge their partials (they never overlap in
//! time, so first and last stay exact).
//!
//! Per tile or instance: count, compensated sums (sum, mean), shifted moments
//! (variance, stddev), min and max, first and last with their event time (ties
//! in arrival order), the distinct values ([`TileDistinct`]: exact up to the
//! view's distinct bound, a HyperLogLog past it) and a quantile sketch per
//! `approx-quantile` field; all merge exactly at emission. `events` keeps the
//! newest `max-events` raw events of the sliding window or of each instance
//! (bounded).
//!
//! The raw-event deque of the entity holds no event for tiled windows. Each
//! tile remembers the offset of its first event (its **anchor**), so that the
//! partition's checkpoint replays from the oldest event any live tile holds.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;
use thin_vec::ThinVec;

use super::entity::{aligned_next, aligned_shown, first_start_after, numeric, AggCell, Verdict};
use super::plan::{Plan, Shape};
use super::sketch::{Hll, QuantileSketch};
use super::sum::{RunningMoments, RunningSum};
use crate::event::format_time;
use crate::plugin::{AggregationKind, Descriptor, WindowKind};

/// Default tile granularity: one hour.
pub const DEFAULT_TILE_MS: u64 = 3_600_000;
/// Default length from which windows are tiled: seven days.
pub const DEFAULT_TILE_MIN_WINDOW_MS: u64 = 7 * 86_400_000;

/// Which windows of a view are tiled, and how finely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Tile granularity in ms; 0 tiles nothing.
    pub tile_ms: u64,
    /// Windows at least this long (ms; a session window's visible length) are tiled.
    pub min_window_ms: u64,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile_ms: DEFAULT_TILE_MS,
            min_window_ms: DEFAULT_TILE_MIN_WINDOW_MS,
        }
    }
}

impl Tiling {
    /// True when a window of `length` ms (a session window: visible length) is tiled.
    fn tiles(&self, length: u64) -> bool {
        self.tile_ms > 0 && length >= self.min_window_ms
    }
}

/// A tiling the plugin's windows do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error(
        "window `{window}` (sliding, {length} ms) is tiled (it is at least tile_min_window_ms = \
         {min} ms long) but its length is not a multiple of tile_ms = {tile} ms: set tile_ms to a \
         divisor of {length}, or tile_min_window_ms above {length} to keep its raw events"
    )]
    NotMultiple {
        window: String,
        length: u64,
        tile: u64,
        min: u64,
    },
}

/// Checks that `tiling` fits the windows of `d`: every tiled window's length is
/// a multiple of the tile.
pub fn check(d: &Descriptor, tiling: Tiling) -> Result<(), TileError> {
    for w in &d.windows {
        if w.kind != WindowKind::Sliding || !tiling.tiles(w.length_ms) {
            continue;
        }
        if w.length_ms % tiling.tile_ms != 0 {
            return Err(TileError::NotMultiple {
                window: w.name.clone(),
                length: w.length_ms,
                tile: tiling.tile_ms,
                min: tiling.min_window_ms,
            });
        }
    }
    Ok(())
}

/// The tiled windows of a plan and what their tiles keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TilePlan {
    /// Tile granularity in ms (0 when nothing is tiled).
    pub tile_ms: i64,
    /// Per window: its index among the tiled windows (empty when none is).
    index: Vec<Option<usize>>,
    /// Per tiled window.
    layouts: Vec<Layout>,
}

/// What one tiled window keeps.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    window: usize,
    /// The window's shape: a sliding window keeps tiles of `tile_ms`, an
    /// aligned one a partial per instance (keyed start / hop), a session
    /// window a partial per session (keyed by its start).
    shape: Shape,
    /// Stored slots whose min, max, first and last the tiles keep.
    edge_slots: Vec<usize>,
    /// Stored slots whose newest raw events are kept (`events`), and how many.
    recent_slots: Vec<usize>,
    recent_cap: usize,
    /// Stored slots whose values the tiles sketch for `approx-quantile`.
    quantile_slots: Vec<usize>,
}

/// The instance of aligned window `shape` shown at stream time `now`,
/// watermark `wm` (its start / hop); `None` for other windows.
fn shown_instance(shape: Shape, now: i64, wm: i64) -> Option<i64> {
    match shape {
        Shape::Aligned {
            length, hop, early, ..
        } => Some(aligned_shown(length, hop, early, now, wm).div_euclid(hop)),
        Shape::Sliding { .. } | Shape::Session { .. } => None,
    }
}

impl TilePlan {
    /// The index of window `w` among the tiled windows, if it is tiled.
    pub fn index(&self, w: usize) -> Option<usize> {
        self.index.get(w).copied().flatten()
    }

    /// True when some window that is not tiled counts an event with these verdicts.
    pub fn holds_raw(&self, verdicts: &[Verdict]) -> bool {
        verdicts
            .iter()
            .enumerate()
            .any(|(w, v)| counts(*v) && self.index(w).is_none())
    }

    /// The first event time tiled window `i` counts at stream time `now`
    /// (sliding windows: aligned ones return `None`).
    fn earliest(&self, i: usize, now: i64) -> Option<i64> {
        let g = self.tile_ms;
        match self.layouts[i].shape {
            Shape::Sliding { length } => Some(now.div_euclid(g) * g + g - length),
            Shape::Aligned { .. } | Shape::Session { .. } => None,
        }
    }
}

fn counts(v: Verdict) -> bool {
    matches!(v, Verdict::Counted | Verdict::Closed { counted: true, .. })
}

impl Plan {
    /// Tiles the windows `tiling` selects
    /// (check the descriptor with [`check`] first; a sliding window whose
    /// length is not a multiple of the tile is left untiled).
    pub fn with_tiling(mut self, tiling: Tiling) -> Self {
        let g = tiling.tile_ms as i64;
        let mut tp = TilePlan {
            tile_ms: g,
            index: vec![None; self.shapes.len()],
            layouts: Vec::new(),
        };
        for (w, shape) in self.shapes.iter().enumerate() {
            let tiled = match *shape {
                Shape::Sliding { length } => tiling.tiles(length as u64) && length % g == 0,
                Shape::Aligned { length, .. } => tiling.tiles(length as u64),
                Shape::Session { retention, .. } => tiling.tiles(retention as u64),
            };
            if !tiled {
                continue;
            }
            tp.index[w] = Some(tp.layouts.len());
            tp.layouts.push(Layout {
                window: w,
                shape: *shape,
                edge_slots: Vec::new(),
                recent_slots: Vec::new(),
                recent_cap: 0,
                quantile_slots: Vec::new(),
            });
        }
        if tp.layouts.is_empty() {
            self.tiles = TilePlan::default();
            return self;
        }
        for op in &mut self.aggs {
            let Some(i) = tp.index[op.window] else {
                continue;
            };
            let layout = &mut tp.layouts[i];
            let slot = op.slot.unwrap_or(0);
            match op.kind {
                AggregationKind::Min
                | AggregationKind::Max
                | AggregationKind::First
                | AggregationKind::Last => {
                    op.state = index_of_or_push(&mut layout.edge_slots, slot)
                }
                AggregationKind::Events => {
                    op.state = index_of_or_push(&mut layout.recent_slots, slot);
                    layout.recent_cap = layout.recent_cap.max(op.max_events);
                }
                AggregationKind::ApproxQuantile => {
                    op.state = index_of_or_push(&mut layout.quantile_slots, slot)
                }
                _ => {}
            }
        }
        self.tiles = tp;
        self
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

/// The verdict of window `w` of `plan` on an event at `t`, stream time `now`,
/// watermark `wm`: the tiled rule for tiled windows, else [`super::entity::verdict`].
pub fn verdict(plan: &Plan, w: usize, t: i64, now: i64, wm: i64) -> Verdict {
    match plan
        .tiles
        .index(w)
        .and_then(|i| plan.tiles.earliest(i, now))
    {
        Some(earliest) if t < earliest => Verdict::Expired,
        Some(_) => Verdict::Counted,
        None => super::entity::verdict(plan.shapes[w], t, now, wm),
    }
}

/// Why no window took an event at `t` (stream time `now`) when the sliding
/// window reaching furthest back is tiled; `None` otherwise.
pub fn expired_reason(plan: &Plan, t: i64, now: i64) -> Option<String> {
    let (earliest, w, length) = plan
        .shapes
        .iter()
        .enumerate()
        .filter_map(|(w, shape)| match *shape {
            Shape::Sliding { length } => Some(
                match plan
                    .tiles
                    .index(w)
                    .and_then(|i| plan.tiles.earliest(i, now))
                {
                    Some(earliest) => (earliest, w, length),
                    None => (now - length + 1, w, length),
                },
            ),
            _ => None,
        })
        .min()?;
    plan.tiles.index(w)?;
    Some(format!(
        "event time {} is before {}, the start of the oldest {} ms tile the {} ms window \
         covers at stream time {}",
        format_time(t),
        format_time(earliest),
        plan.tiles.tile_ms,
        length,
        format_time(now)
    ))
}

/// The distinct values of one field in one tile: the set itself while it has
/// at most the view's `distinct_exact_limit` values, a HyperLogLog of them
/// past that (so a tile keeps at most `limit` values or 4 KiB).
#[derive(Debug, Clone)]
pub enum TileDistinct {
    Exact(FxHashSet<u64>),
    Sketch(Box<Hll>),
}

impl TileDistinct {
    fn insert(&mut self, value: u64, limit: usize) {
        match self {
            TileDistinct::Exact(set) => {
                set.insert(value);
                if set.len() > limit {
                    *self = TileDistinct::Sketch(Box::new(hll_of(set.drain())));
                }
            }
            TileDistinct::Sketch(hll) => hll.add(value),
        }
    }

    /// Adds the values of `other`.
    fn merge(&mut self, other: TileDistinct, limit: usize) {
        match other {
            TileDistinct::Exact(set) => set.into_iter().for_each(|v| self.insert(v, limit)),
            TileDistinct::Sketch(other) => match self {
                TileDistinct::Exact(set) => {
                    let mut hll = hll_of(set.drain());
                    hll.merge(&other);
                    *self = TileDistinct::Sketch(Box::new(hll));
                }
                TileDistinct::Sketch(hll) => hll.merge(&other),
            },
        }
    }
}

fn hll_of(values: impl Iterator<Item = u64>) -> Hll {
    let mut hll = Hll::new();
    values.for_each(|v| hll.add(v));
    hll
}

/// The distinct count over `tiles` holding `n` events: exact while the union
/// of their exact sets has at most `limit` values, otherwise the merged
/// HyperLogLog's estimate, kept within [limit + 1, n] (both sure).
fn merged_distinct<'a>(
    tiles: impl Iterator<Item = &'a TileDistinct>,
    limit: usize,
    n: usize,
) -> i64 {
    let mut exact = FxHashSet::default();
    let mut hll: Option<Hll> = None;
    for tile in tiles {
        match (tile, &mut hll) {
            (TileDistinct::Exact(set), Some(h)) => set.iter().for_each(|v| h.add(*v)),
            (TileDistinct::Exact(set), None) => {
                exact.extend(set.iter().copied());
                if exact.len() > limit {
                    hll = Some(hll_of(exact.drain()));
                }
            }
            (TileDistinct::Sketch(other), h) => {
                h.get_or_insert_with(|| hll_of(exact.drain())).merge(other)
            }
        }
    }
    match hll {
        None => exact.len() as i64,
        Some(h) => (h.estimate().round() as i64).clamp(limit as i64 + 1, n as i64),
    }
}

/// Min, max, first and last of one field in one tile.
#[derive(Debug, Clone, Copy)]
struct Edge {
    min: f64,
    max: f64,
    /// (event time, stored cell) of the earliest event, ties to the earlier arrival.
    first: (i64, u64),
    /// ... of the latest, ties to the later arrival.
    last: (i64, u64),
}

/// Partial aggregates of one tile of a sliding window, or of one instance of
/// an aligned window.
#[derive(Debug, Clone)]
struct Tile {
    k: i64,
    /// Offset of the first event applied to the tile (the smallest: offsets grow).
    anchor: i64,
    count: usize,
    sums: Box<[RunningSum]>,
    moments: Box<[RunningMoments]>,
    edges: Box<[Edge]>,
    distinct: Box<[TileDistinct]>,
    quantiles: Box<[QuantileSketch]>,
    /// The instance's or session's newest raw events (with `events` only).
    recent: Option<Box<Recent>>,
}

impl Tile {
    fn new(plan: &Plan, layout: &Layout, k: i64, anchor: i64) -> Self {
        let w = layout.window;
        let edge = Edge {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: (i64::MAX, 0),
            last: (i64::MIN, 0),
        };
        let own_recent = !matches!(layout.shape, Shape::Sliding { .. });
        Tile {
            k,
            anchor,
            count: 0,
            sums: vec![RunningSum::default(); plan.sum_slots[w].len()].into(),
            moments: vec![RunningMoments::default(); plan.moment_slots[w].len()].into(),
            edges: vec![edge; layout.edge_slots.len()].into(),
            distinct: vec![TileDistinct::Exact(FxHashSet::default()); plan.distinct_slots[w].len()]
                .into(),
            quantiles: vec![QuantileSketch::new(); layout.quantile_slots.len()].into(),
            recent: (own_recent && layout.recent_cap > 0)
                .then(|| Box::new(Recent::new(layout.recent_slots.len()))),
        }
    }

    /// Adds the event at `t` whose stored fields are `cells`.
    fn add(&mut self, plan: &Plan, layout: &Layout, t: i64, cells: &[u64]) {
        let w = layout.window;
        for (sum, slot) in self.sums.iter_mut().zip(&plan.sum_slots[w]) {
            sum.add(numeric(cells[*slot], plan.stored[*slot].1));
        }
        for (m, slot) in self.moments.iter_mut().zip(&plan.moment_slots[w]) {
            m.add(numeric(cells[*slot], plan.stored[*slot].1), self.count);
        }
        for (e, slot) in self.edges.iter_mut().zip(&layout.edge_slots) {
            let x = numeric(cells[*slot], plan.stored[*slot].1);
            e.min = if self.count == 0 { x } else { e.min.min(x) };
            e.max = if self.count == 0 { x } else { e.max.max(x) };
            if t < e.first.0 {
                e.first = (t, cells[*slot]);
            }
            if t >= e.last.0 {
                e.last = (t, cells[*slot]);
            }
        }
        for (set, slot) in self.distinct.iter_mut().zip(&plan.distinct_slots[w]) {
            set.insert(cells[*slot], plan.distinct_exact_limit);
        }
        for (sketch, slot) in self.quantiles.iter_mut().zip(&layout.quantile_slots) {
            sketch.add(numeric(cells[*slot], plan.stored[*slot].1));
        }
        if let Some(recent) = &mut self.recent {
            recent.push(layout, t, cells);
        }
        self.count += 1;
    }

    /// Adds every event of `later`, whose events are all later in time than
    /// this tile's (sessions never overlap). Keeps the smaller anchor.
    fn merge(&mut self, plan: &Plan, layout: &Layout, later: Tile) {
        let n = self.count;
        self.anchor = self.anchor.min(later.anchor);
        for (sum, other) in self.sums.iter_mut().zip(later.sums.iter()) {
            sum.merge(other);
        }
        for (m, other) in self.moments.iter_mut().zip(later.moments.iter()) {
            m.merge(n, other, later.count);
        }
        for (e, other) in self.edges.iter_mut().zip(later.edges.iter()) {
            e.min = e.min.min(other.min);
            e.max = e.max.max(other.max);
            if other.first.0 < e.first.0 {
                e.first = other.first;
            }
            if other.last.0 >= e.last.0 {
                e.last = other.last;
            }
        }
        for (set, other) in self.distinct.iter_mut().zip(later.distinct.into_vec()) {
            set.merge(other, plan.distinct_exact_limit);
        }
        for (sketch, other) in self.quantiles.iter_mut().zip(later.quantiles.iter()) {
            sketch.merge(other);
        }
        if let (Some(recent), Some(other)) = (&mut self.recent, later.recent) {
            recent.append(layout, *other);
        }
        self.count += later.count;
    }
}

/// The newest raw events (`events`) of a sliding window or an instance, by
/// time, ties in arrival order: their times, and one column per recent slot.
#[derive(Debug, Clone, Default)]
struct Recent {
    times: VecDeque<i64>,
    cells: Vec<VecDeque<u64>>,
}

impl Recent {
    fn new(slots: usize) -> Self {
        Self {
            times: VecDeque::new(),
            cells: vec![VecDeque::new(); slots],
        }
    }

    /// Keeps the event at `t` if it is among the newest `recent_cap`.
    fn push(&mut self, layout: &Layout, t: i64, cells: &[u64]) {
        let at = self.times.partition_point(|x| *x <= t);
        self.times.insert(at, t);
        for (column, slot) in self.cells.iter_mut().zip(&layout.recent_slots) {
            column.insert(at, cells[*slot]);
        }
        if self.times.len() > layout.recent_cap {
            self.pop_front();
        }
    }

    /// Appends the events of `later`, all later in time than these (ties
    /// excepted, which arrived later), keeping the newest `recent_cap`.
    fn append(&mut self, layout: &Layout, later: Recent) {
        self.times.extend(later.times);
        for (column, other) in self.cells.iter_mut().zip(later.cells) {
            column.extend(other);
        }
        while self.times.len() > layout.recent_cap {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        self.times.pop_front();
        for column in &mut self.cells {
            column.pop_front();
        }
    }

    /// The newest `max` events of recent column `column`, oldest first.
    fn events(&self, column: usize, max: usize) -> AggCell {
        let len = self.times.len();
        let from = len - len.min(max);
        let cells = &self.cells[column];
        AggCell::Events((from..len).map(|i| (self.times[i], cells[i])).collect())
    }
}

/// One tiled window of one entity.
#[derive(Debug, Clone, Default)]
struct TiledWindow {
    /// Non-empty tiles (sliding), instances (aligned) or sessions (keyed by
    /// their start), by ascending `k`.
    tiles: VecDeque<Tile>,
    /// Session windows: the last event time of each session in `tiles`.
    lasts: VecDeque<i64>,
    /// Events over every tile (sliding windows).
    count: usize,
    /// The newest events of a sliding window (`events`).
    recent: Recent,
}

/// What a tiled window shows: all its tiles (sliding), or one partial.
enum Shown<'a> {
    All,
    One(Option<&'a Tile>),
}

impl TiledWindow {
    /// What the window shows at stream time `now`, watermark `wm`.
    fn shown(&self, shape: Shape, now: i64, wm: i64) -> Shown<'_> {
        match shape {
            Shape::Sliding { .. } => Shown::All,
            Shape::Aligned { .. } => {
                Shown::One(shown_instance(shape, now, wm).and_then(|k| self.get(k)))
            }
            Shape::Session { .. } => {
                Shown::One(self.shown_session(shape, wm).map(|i| &self.tiles[i]))
            }
        }
    }

    /// The index of the session shown at watermark `wm`: the latest still
    /// visible that has fired (ended), or with early results the latest.
    fn shown_session(&self, shape: Shape, wm: i64) -> Option<usize> {
        let Shape::Session {
            gap,
            retention,
            early,
            ..
        } = shape
        else {
            return None;
        };
        (0..self.tiles.len())
            .rev()
            .filter(|&i| self.lasts[i] + gap + retention > wm)
            .find(|&i| early || self.lasts[i] + gap <= wm)
    }

    /// The span (start, last) of session `i`.
    fn span(&self, i: usize) -> (i64, i64) {
        (self.tiles[i].k, self.lasts[i])
    }

    /// The tile or instance `k`, if it holds an event.
    fn get(&self, k: i64) -> Option<&Tile> {
        let pos = self.tiles.partition_point(|tile| tile.k < k);
        self.tiles.get(pos).filter(|tile| tile.k == k)
    }

    /// Adds the event at `t` to tile or instance `k` (opening it, anchored at
    /// `offset`, if needed). Returns 1 when it opened one.
    fn add(
        &mut self,
        plan: &Plan,
        layout: &Layout,
        k: i64,
        (t, offset): (i64, i64),
        cells: &[u64],
    ) -> u32 {
        let pos = self.tiles.partition_point(|tile| tile.k < k);
        let opened = if self.tiles.get(pos).is_none_or(|tile| tile.k != k) {
            self.tiles.insert(pos, Tile::new(plan, layout, k, offset));
            1
        } else {
            0
        };
        self.tiles[pos].add(plan, layout, t, cells);
        opened
    }
}

/// Every tiled window of one entity.
#[derive(Debug, Clone, Default)]
pub struct Tiles {
    windows: ThinVec<TiledWindow>,
}

impl Tiles {
    pub fn new(plan: &Plan) -> Self {
        Self {
            windows: plan
                .tiles
                .layouts
                .iter()
                .map(|l| TiledWindow {
                    recent: match l.shape {
                        Shape::Sliding { .. } => Recent::new(l.recent_slots.len()),
                        Shape::Aligned { .. } | Shape::Session { .. } => Recent::default(),
                    },
                    ..TiledWindow::default()
                })
                .collect(),
        }
    }

    /// True when no tiled window holds an event.
    pub fn is_empty(&self) -> bool {
        self.windows.iter().all(|w| w.tiles.is_empty())
    }

    /// Tiles and instances held over every window.
    pub fn len(&self) -> usize {
        self.windows.iter().map(|w| w.tiles.len()).sum()
    }

    /// Events shown by tiled window `w` of the plan at stream time `now`, watermark `wm`.
    pub fn count(&self, plan: &Plan, w: usize, now: i64, wm: i64) -> usize {
        let Some(i) = plan.tiles.index(w) else {
            return 0;
        };
        let win = &self.windows[i];
        match win.shown(plan.tiles.layouts[i].shape, now, wm) {
            Shown::All => win.count,
            Shown::One(tile) => tile.map_or(0, |tile| tile.count),
        }
    }

    /// Applies an event at `t` read at `offset` (`event`), arriving at stream
    /// time `now` and watermark `wm` (`clock`), to the tiled windows whose
    /// verdicts count it: to its tile (sliding), to every instance holding it
    /// that is still open (aligned), or to its session, merged with the open
    /// sessions it touches (`released` gets the anchor of each partial merged
    /// away). Returns whether a shown value changed and how many partials it
    /// opened (each anchored at `offset`).
    pub fn insert(
        &mut self,
        plan: &Plan,
        (t, offset): (i64, i64),
        cells: &[u64],
        verdicts: &[Verdict],
        (now, wm): (i64, i64),
        released: &mut impl FnMut(i64),
    ) -> (bool, u32) {
        let (mut shown, mut opened) = (false, 0);
        let g = plan.tiles.tile_ms;
        for (i, layout) in plan.tiles.layouts.iter().enumerate() {
            if !counts(verdicts[layout.window]) {
                continue;
            }
            let win = &mut self.windows[i];
            match layout.shape {
                Shape::Sliding { .. } => {
                    shown = true;
                    opened += win.add(plan, layout, t.div_euclid(g), (t, offset), cells);
                    win.count += 1;
                    if layout.recent_cap > 0 {
                        win.recent.push(layout, t, cells);
                    }
                }
                Shape::Aligned {
                    length, hop, grace, ..
                } => {
                    // Instances holding t, from the first still open.
                    let first = first_start_after(t - length, hop)
                        .max(first_start_after(wm - grace - length, hop))
                        .div_euclid(hop);
                    let shown_k = shown_instance(layout.shape, now, wm);
                    for k in first..=t.div_euclid(hop) {
                        opened += win.add(plan, layout, k, (t, offset), cells);
                        shown |= shown_k == Some(k);
                    }
                }
                Shape::Session { gap, grace, .. } => {
                    let before = win.shown_session(layout.shape, wm).map(|i| win.span(i));
                    // The open sessions t touches merge, earliest first (they
                    // never overlap, so each merged one is later in time).
                    let (mut lo, mut hi) = (t, t);
                    let mut merged: Option<Tile> = None;
                    let mut i = 0;
                    while i < win.tiles.len() {
                        let (start, last) = win.span(i);
                        if last + gap + grace <= wm || start - gap >= t || t >= last + gap {
                            i += 1;
                            continue;
                        }
                        let tile = win.tiles.remove(i).expect("in range");
                        win.lasts.remove(i);
                        (lo, hi) = (lo.min(start), hi.max(last));
                        match &mut merged {
                            None => merged = Some(tile),
                            Some(m) => {
                                released(m.anchor.max(tile.anchor));
                                m.merge(plan, layout, tile);
                            }
                        }
                    }
                    let mut tile = merged.unwrap_or_else(|| {
                        opened += 1;
                        Tile::new(plan, layout, t, offset)
                    });
                    tile.add(plan, layout, t, cells);
                    tile.k = lo;
                    let at = win.tiles.partition_point(|x| x.k < lo);
                    win.tiles.insert(at, tile);
                    win.lasts.insert(at, hi);
                    let after = win.shown_session(layout.shape, wm).map(|i| win.span(i));
                    shown |= before != after || after == Some((lo, hi));
                }
            }
        }
        (shown, opened)
    }

    /// Moves to stream time `now` (watermark `wm`): tiles that left their
    /// window, and instances neither open nor shown, are dropped (`dropped`
    /// gets each one's anchor).
    pub fn advance(&mut self, plan: &Plan, now: i64, wm: i64, dropped: &mut impl FnMut(i64)) {
        let g = plan.tiles.tile_ms;
        for (i, win) in self.windows.iter_mut().enumerate() {
            let keep = match plan.tiles.layouts[i].shape {
                Shape::Sliding { .. } => {
                    let earliest = plan.tiles.earliest(i, now).expect("a sliding window");
                    while win.recent.times.front().is_some_and(|t| *t < earliest) {
                        win.recent.pop_front();
                    }
                    earliest.div_euclid(g)
                }
                Shape::Aligned {
                    length, hop, grace, ..
                } => {
                    // The latest fired instance, and those still open.
                    let fired = aligned_shown(length, hop, false, now, wm);
                    let open = first_start_after(wm - grace - length, hop);
                    fired.min(open).div_euclid(hop)
                }
                Shape::Session { gap, retention, .. } => {
                    // Sessions never overlap: those past their retention come first.
                    while win.lasts.front().is_some_and(|l| l + gap + retention <= wm) {
                        win.lasts.pop_front();
                        dropped(win.tiles.pop_front().expect("one per last").anchor);
                    }
                    continue;
                }
            };
            while win.tiles.front().is_some_and(|tile| tile.k < keep) {
                let tile = win.tiles.pop_front().expect("checked");
                if let Shape::Sliding { .. } = plan.tiles.layouts[i].shape {
                    win.count -= tile.count;
                }
                dropped(tile.anchor);
            }
        }
    }

    /// Calls `at` with the stream times at which a tile leaves its window, an
    /// instance is dropped, or the instance shown changes (stream time `now`,
    /// watermark `wm`); `at` ignores those not after `now`.
    pub fn next_changes(&self, plan: &Plan, now: i64, wm: i64, at: &mut impl FnMut(i64)) {
        let g = plan.tiles.tile_ms;
        let lag = plan.out_of_orderness;
        for (win, layout) in self.windows.iter().zip(&plan.tiles.layouts) {
            let Some(front) = win.tiles.front() else {
                continue;
            };
            match layout.shape {
                Shape::Session { gap, retention, .. } => {
                    for last in &win.lasts {
                        let end = last + gap;
                        if end > wm {
                            at(end + lag);
                        }
                        at(end + retention + lag);
                    }
                }
                Shape::Sliding { length } => at(front.k * g + length),
                Shape::Aligned {
                    length, hop, grace, ..
                } => {
                    let oldest = front.k * hop;
                    at(oldest + length + hop.max(grace) + lag);
                    let k = shown_instance(layout.shape, now, wm).expect("an aligned window");
                    let start = k * hop;
                    let shown = win.get(k).is_some();
                    let pos = win.tiles.partition_point(|tile| tile.k <= k);
                    let later_end = win.tiles.get(pos).map(|tile| tile.k * hop + length);
                    aligned_next(layout.shape, start, shown, later_end, lag, at);
                }
            }
        }
    }

    /// The value of aggregation `a` of the plan (on a tiled window), at
    /// stream time `now` and watermark `wm`.
    pub fn aggregate(&self, plan: &Plan, a: usize, now: i64, wm: i64) -> AggCell {
        let op = &plan.aggs[a];
        let i = plan.tiles.index(op.window).expect("a tiled window");
        let win = &self.windows[i];
        match win.shown(plan.tiles.layouts[i].shape, now, wm) {
            Shown::All => aggregate(plan, a, win.tiles.iter(), win.count, Some(&win.recent)),
            Shown::One(tile) => {
                let recent = tile.and_then(|t| t.recent.as_deref());
                aggregate(
                    plan,
                    a,
                    tile.into_iter(),
                    tile.map_or(0, |t| t.count),
                    recent,
                )
            }
        }
    }
}

/// Aggregation `a` of the plan over `tiles` (holding `n` events, the newest
/// of which are in `recent`).
fn aggregate<'a>(
    plan: &Plan,
    a: usize,
    tiles: impl DoubleEndedIterator<Item = &'a Tile> + Clone,
    n: usize,
    recent: Option<&Recent>,
) -> AggCell {
    let op = &plan.aggs[a];
    let float = |x: Option<f64>| x.map_or(AggCell::Null, AggCell::Float);
    let sum = || {
        let mut s = RunningSum::default();
        tiles.clone().for_each(|t| s.add(t.sums[op.state].value()));
        s.value()
    };
    let edges = || tiles.clone().map(|t| t.edges[op.state]);
    match op.kind {
        AggregationKind::Count => AggCell::Int(n as i64),
        AggregationKind::Sum => AggCell::Float(sum()),
        AggregationKind::Mean => float((n > 0).then(|| sum() / n as f64)),
        AggregationKind::Variance => float(variance(tiles, op.state)),
        AggregationKind::Stddev => float(variance(tiles, op.state).map(f64::sqrt)),
        AggregationKind::Min => float(edges().map(|e| e.min).reduce(f64::min)),
        AggregationKind::Max => float(edges().map(|e| e.max).reduce(f64::max)),
        AggregationKind::First => tiles.clone().next().map_or(AggCell::Null, |t| {
            AggCell::Stored(t.edges[op.state].first.1)
        }),
        AggregationKind::Last => tiles
            .clone()
            .next_back()
            .map_or(AggCell::Null, |t| AggCell::Stored(t.edges[op.state].last.1)),
        AggregationKind::DistinctCount => AggCell::Int(merged_distinct(
            tiles.map(|t| &t.distinct[op.state]),
            plan.distinct_exact_limit,
            n,
        )),
        AggregationKind::Events => recent.map_or(AggCell::Events(Vec::new()), |r| {
            r.events(op.state, op.max_events)
        }),
        AggregationKind::ApproxQuantile => {
            let mut all = QuantileSketch::new();
            tiles.for_each(|t| all.merge(&t.quantiles[op.state]));
            float(all.quantile(op.quantile))
        }
    }
}

/// Population variance of moment `m` over `tiles`, merging the tiles'
/// (count, mean, squared deviations) pairwise (Chan et al.).
fn variance<'a>(tiles: impl Iterator<Item = &'a Tile>, m: usize) -> Option<f64> {
    let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, RunningSum::default());
    for tile in tiles {
        let (tile_mean, tile_m2) = tile.moments[m].mean_m2(tile.count)?;
        let k = tile.count as f64;
        let total = n + k;
        let delta = tile_mean - mean;
        mean += delta * k / total;
        m2.add(tile_m2);
        m2.add(delta * delta * n * k / total);
        n = total;
    }
    (n > 0.0).then(|| (m2.value() / n).max(0.0))
}
