//! One entity's window state: the events it still needs, sorted by event time
//! (ties in arrival order), each with the watermark it arrived at when some
//! window reads it; the incremental aggregates of its sliding windows; and its
//! sessions.
//!
//! Sliding windows are aggregated incrementally (they change at every event
//! and every advance of stream time). Tumbling, hopping and session windows
//! are aggregated when emitted, over the events of the instance being shown:
//! an event counts in an instance when its time lies in it and the instance
//! was still open (watermark < end + grace) when the event arrived. Tiled
//! windows keep partial aggregates instead ([`super::tiles`]).

use std::collections::VecDeque;

use thin_vec::ThinVec;

use super::plan::{AggOp, Plan, Shape};
use super::sketch::{distinct_count, quantile_of, SlidingDistinct};
use super::sum::{variance_of, RunningMoments, RunningSum};
use super::tiles::Tiles;
use crate::plugin::{AggregationKind, ValueType};

/// One aggregation value.
#[derive(Debug, Clone, PartialEq)]
pub enum AggCell {
    Null,
    Int(i64),
    Float(f64),
    /// A stored field value (first/last), typed by the aggregation's field.
    Stored(u64),
    /// Raw events (events): (event time, stored field value), oldest first
    /// (ties in arrival order), the newest `max-events` of the window.
    Events(Vec<(i64, u64)>),
}

/// A session: applied events with times in [start, last]; it ends at last + gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub start: i64,
    pub last: i64,
}

/// What one window does with an arriving event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted (in at least one instance of the window).
    Counted,
    /// Older than a sliding window: it would already have left it.
    Expired,
    /// Some instance holding it has closed (watermark >= end + grace); the
    /// field is that instance's end. For hopping windows the event may still
    /// count in later instances (`counted`).
    Closed { end: i64, counted: bool },
}

/// The verdict of window `shape` on an event at `t`, stream time `now`, watermark `wm`.
pub fn verdict(shape: Shape, t: i64, now: i64, wm: i64) -> Verdict {
    match shape {
        Shape::Sliding { length } => {
            if t > now - length {
                Verdict::Counted
            } else {
                Verdict::Expired
            }
        }
        Shape::Aligned {
            length, hop, grace, ..
        } => {
            let latest = t.div_euclid(hop) * hop;
            let earliest = first_start_after(t - length, hop);
            if earliest + length + grace > wm {
                Verdict::Counted
            } else {
                Verdict::Closed {
                    end: earliest + length,
                    counted: latest + length + grace > wm,
                }
            }
        }
        Shape::Session { gap, grace, .. } => {
            if t + gap + grace > wm {
                Verdict::Counted
            } else {
                Verdict::Closed {
                    end: t + gap,
                    counted: false,
                }
            }
        }
    }
}

/// The smallest multiple of `hop` strictly greater than `x`.
pub(super) fn first_start_after(x: i64, hop: i64) -> i64 {
    (x.div_euclid(hop) + 1) * hop
}

/// The instance of an aligned window shown at stream time `now`, watermark
/// `wm`: with early results the one holding `now` that ends first, otherwise
/// the latest one that has fired (end <= wm). Returns its start.
pub fn aligned_shown(length: i64, hop: i64, early: bool, now: i64, wm: i64) -> i64 {
    if early {
        first_start_after(now - length, hop)
    } else {
        (wm - length).div_euclid(hop) * hop
    }
}

/// When the shown instance of an aligned window next changes, given the
/// start of the one shown now (`start`, from [`aligned_shown`]), whether it
/// holds anything, and the end of the first later instance that does.
/// Reports the time through `at`. Shared by held events and tiles.
pub(super) fn aligned_next(
    shape: Shape,
    start: i64,
    shown: bool,
    later_end: Option<i64>,
    lag: i64,
    at: &mut impl FnMut(i64),
) {
    let Shape::Aligned {
        length, hop, early, ..
    } = shape
    else {
        return;
    };
    if early {
        // The instance holding T that ends first moves on once T reaches its end.
        if shown || later_end.is_some() {
            at(start + length);
        }
    } else if shown {
        at(start + length + hop + lag);
    } else if let Some(end) = later_end {
        // The first later instance holding something fires at its end.
        at(end.max(start + length + hop) + lag);
    }
}

/// An entity's events and the state of every window over them.
#[derive(Debug, Clone)]
pub struct EntityWindow {
    /// The held events, in one buffer of `Layout::stride` words per event;
    /// event times ascending, equal times in arrival order.
    held: VecDeque<u64>,
    /// The incremental state of every sliding window, in one allocation
    /// (layout: [`Plan::slide_words`]): its count (it covers the newest
    /// `count` held events), running sums and running moments.
    slides: Box<[u64]>,
    /// The sliding windows' distinct-count states ([`Plan::slide_distinct`]).
    distinct: Box<[SlidingDistinct]>,
    /// Per window (session windows only): sessions by start. Empty when the
    /// plan has no session window.
    sessions: ThinVec<Vec<Session>>,
    /// The tiled sliding windows (their events are not in `held`).
    pub(super) tiles: Tiles,
}

/// Where an event's words sit in [`EntityWindow::held`]: its time, then the
/// watermark it arrived at (only when the plan has a tumbling, hopping or
/// session window: sliding windows never read it), then its stored fields.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Words per event.
    stride: usize,
    /// Index of the first stored field in an event's words.
    cells: usize,
}

impl Layout {
    fn of(plan: &Plan) -> Self {
        let cells = if plan.keeps_marks() { 2 } else { 1 };
        Self {
            stride: cells + plan.stored.len(),
            cells,
        }
    }
}

/// One stored field of the held events, read by event index.
#[derive(Clone, Copy)]
struct Column<'a> {
    held: &'a VecDeque<u64>,
    stride: usize,
    at: usize,
}

impl Column<'_> {
    fn get(&self, i: usize) -> u64 {
        self.held[i * self.stride + self.at]
    }
}

/// Makes room in `held` for one more event of `stride` words, growing it by an
/// eighth of its events (at least one) rather than doubling it: held events
/// are most of the window state, doubling leaves on average a third of the
/// buffer unused, and the allocator keeps some of the buffers a growth frees
/// (docs/benchmarks.md has the bytes per event of each). Each growth copies
/// the buffer: about eight events' words per event held, little beside the
/// processing of an event.
fn reserve_event(held: &mut VecDeque<u64>, stride: usize) {
    if held.capacity() - held.len() < stride {
        let events = held.len() / stride;
        held.reserve_exact(stride * (events / 8).max(1));
    }
}

/// Below this many events' room, a held-events buffer is not shrunk.
const SHRINK_FROM_EVENTS: usize = 64;

/// Reads a stored numeric cell as a float.
pub fn numeric(cell: u64, kind: ValueType) -> f64 {
    match kind {
        ValueType::Int64 => cell as i64 as f64,
        _ => f64::from_bits(cell),
    }
}

impl EntityWindow {
    pub fn new(plan: &Plan) -> Self {
        // Zero words are a zero count, sum and moments.
        let words = plan.slide_words.last().copied().unwrap_or(0);
        let distinct = plan.slide_distinct.last().copied().unwrap_or(0);
        let sessions = if plan
            .shapes
            .iter()
            .any(|s| matches!(s, Shape::Session { .. }))
        {
            (0..plan.shapes.len()).map(|_| Vec::new()).collect()
        } else {
            ThinVec::new()
        };
        Self {
            held: VecDeque::new(),
            slides: vec![0; words].into(),
            distinct: vec![SlidingDistinct::default(); distinct].into(),
            sessions,
            tiles: Tiles::new(plan),
        }
    }

    /// Asks the CPU to start loading what advancing and emission read first
    /// (the oldest and newest held events, the sliding aggregates, the
    /// distinct counts), so that several entities' cache misses overlap (see
    /// [`super::prefetch`]).
    pub fn prefetch(&self) {
        super::prefetch(self.held.front());
        super::prefetch(self.held.back());
        super::prefetch(self.slides.first());
        super::prefetch(self.distinct.first());
    }

    /// Asks the CPU to start loading the distinct-count lists (read when an
    /// event leaves a window); the state [`EntityWindow::prefetch`] loads
    /// holds their addresses.
    pub fn prefetch_lists(&self) {
        self.distinct.iter().for_each(SlidingDistinct::prefetch);
    }

    /// Events in sliding window `w`.
    fn slide_count(&self, plan: &Plan, w: usize) -> usize {
        self.slides[plan.slide_words[w]] as usize
    }

    /// True when the entity holds no event, no session and no tile.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.sessions.iter().all(Vec::is_empty) && self.tiles.is_empty()
    }

    /// Events held.
    pub fn len(&self, plan: &Plan) -> usize {
        self.held.len() / Layout::of(plan).stride
    }

    /// The time of held event `i`.
    fn time(&self, layout: Layout, i: usize) -> i64 {
        self.held[i * layout.stride] as i64
    }

    /// The watermark held event `i` arrived at (plans with marks only).
    fn mark(&self, layout: Layout, i: usize) -> i64 {
        self.held[i * layout.stride + 1] as i64
    }

    /// The number of held events (from the oldest) for which `pred(time)`;
    /// `pred` is true up to some event and false after it.
    fn partition_point(&self, layout: Layout, pred: impl Fn(i64) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.held.len() / layout.stride);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.time(layout, mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Stored field `slot` of the held events.
    fn column(&self, layout: Layout, slot: usize) -> Column<'_> {
        Column {
            held: &self.held,
            stride: layout.stride,
            at: layout.cells + slot,
        }
    }

    /// Inserts an event at time `t`, arriving at stream time `now` and
    /// watermark `wm`, counted by the windows whose `verdicts` say so (tiled
    /// windows excepted: see [`Tiles::insert`]). Returns true when a value
    /// shown to the plugin may have changed.
    pub fn insert(
        &mut self,
        plan: &Plan,
        t: i64,
        cells: &[u64],
        now: i64,
        wm: i64,
        verdicts: &[Verdict],
    ) -> bool {
        let layout = Layout::of(plan);
        let n = self.held.len() / layout.stride;
        // Events mostly arrive in time order: look at the newest first.
        let pos = if n == 0 || self.time(layout, n - 1) <= t {
            n
        } else {
            self.partition_point(layout, |x| x <= t)
        };
        let words = std::iter::once(t as u64)
            .chain((layout.cells == 2).then_some(wm as u64))
            .chain(cells.iter().copied());
        reserve_event(&mut self.held, layout.stride);
        if pos == n {
            self.held.extend(words);
        } else {
            for (k, word) in words.enumerate() {
                self.held.insert(pos * layout.stride + k, word);
            }
        }
        let mut shown = false;
        for (w, shape) in plan.shapes.iter().enumerate() {
            let counted = matches!(
                verdicts[w],
                Verdict::Counted | Verdict::Closed { counted: true, .. }
            );
            if !counted || plan.tiles.index(w).is_some() {
                continue;
            }
            match *shape {
                Shape::Sliding { .. } => {
                    let state = (&mut *self.slides, &mut *self.distinct);
                    account(state, plan, w, |slot| cells[slot], 1);
                    shown = true;
                }
                Shape::Aligned {
                    length,
                    hop,
                    grace,
                    early,
                } => {
                    let start = aligned_shown(length, hop, early, now, wm);
                    shown |= (start..start + length).contains(&t) && wm < start + length + grace;
                }
                Shape::Session {
                    gap,
                    retention,
                    grace,
                    early,
                } => {
                    let before = self.shown_session(w, gap, retention, early, wm);
                    let sessions = &mut self.sessions[w];
                    let mut merged = Session { start: t, last: t };
                    sessions.retain(|s| {
                        let open = s.last + gap + grace > wm;
                        let touches = s.start - gap < t && t < s.last + gap;
                        if open && touches {
                            merged.start = merged.start.min(s.start);
                            merged.last = merged.last.max(s.last);
                            false
                        } else {
                            true
                        }
                    });
                    let at = sessions.partition_point(|s| s.start < merged.start);
                    sessions.insert(at, merged);
                    let after = self.shown_session(w, gap, retention, early, wm);
                    shown |= before != after || after == Some(merged);
                }
            }
        }
        shown
    }

    /// Moves to stream time `now` (watermark `wm`): events that left a sliding
    /// window leave its aggregates, and events and sessions no window needs
    /// any more are dropped (`dropped` gets each dropped event's time).
    pub fn advance(&mut self, plan: &Plan, now: i64, wm: i64, dropped: &mut impl FnMut(i64)) {
        let layout = Layout::of(plan);
        let n = self.held.len() / layout.stride;
        for (w, shape) in plan.shapes.iter().enumerate() {
            let Shape::Sliding { length } = *shape else {
                continue;
            };
            while self.slide_count(plan, w) > 0 {
                let i = n - self.slide_count(plan, w);
                if self.time(layout, i) > now - length {
                    break;
                }
                let base = i * layout.stride + layout.cells;
                let held = &self.held;
                let state = (&mut *self.slides, &mut *self.distinct);
                account(state, plan, w, |slot| held[base + slot], -1);
            }
            let count = self.slide_count(plan, w);
            let held = &self.held;
            let distinct = &mut self.distinct[plan.slide_distinct[w]..plan.slide_distinct[w + 1]];
            for (d, slot) in distinct.iter_mut().zip(&plan.distinct_slots[w]) {
                let at = layout.cells + *slot;
                let values = (n - count..n).map(|i| held[i * layout.stride + at]);
                d.settle(values, count, plan.distinct_exact_limit);
            }
        }
        let mut keep_from = i64::MAX;
        for (w, shape) in plan.shapes.iter().enumerate() {
            if plan.tiles.index(w).is_some() {
                // Tiled: none of the held events are its own.
                continue;
            }
            let from = match *shape {
                Shape::Sliding { .. } => {
                    let count = self.slide_count(plan, w);
                    if count == 0 {
                        i64::MAX
                    } else {
                        self.time(layout, n - count)
                    }
                }
                Shape::Aligned {
                    length, hop, grace, ..
                } => {
                    // Instances still needed: not closed, or the latest fired.
                    let fired = aligned_shown(length, hop, false, now, wm);
                    let open = first_start_after(wm - grace - length, hop);
                    fired.min(open)
                }
                Shape::Session { gap, retention, .. } => {
                    let sessions = &mut self.sessions[w];
                    sessions.retain(|s| s.last + gap + retention > wm);
                    sessions.first().map_or(i64::MAX, |s| s.start)
                }
            };
            keep_from = keep_from.min(from);
        }
        while let Some(&t) = self.held.front() {
            let t = t as i64;
            if t >= keep_from {
                break;
            }
            self.held.drain(..layout.stride);
            dropped(t);
        }
        // An entity whose rate fell still has the buffer of its busiest hour:
        // once three quarters of it stand empty, give back half of it.
        let (len, capacity) = (self.held.len(), self.held.capacity());
        if capacity >= SHRINK_FROM_EVENTS * layout.stride && capacity >= 4 * len {
            self.held.shrink_to(2 * len);
        }
    }

    /// Words the held-events buffer has room for (tests of its growth and shrinking).
    #[cfg(test)]
    pub(super) fn held_capacity(&self) -> usize {
        self.held.capacity()
    }

    /// The earliest stream time at which a value shown may change or some
    /// state may be dropped, given stream time `now` and watermark `wm`.
    pub fn next_change(&self, plan: &Plan, now: i64, wm: i64) -> Option<i64> {
        let layout = Layout::of(plan);
        let n = self.held.len() / layout.stride;
        let lag = plan.out_of_orderness;
        let mut next: Option<i64> = None;
        // What is due at `now` or before is already reflected in the state
        // (the entity was just advanced to `now`).
        let mut at = |x: i64| {
            if x > now {
                next = Some(next.map_or(x, |n: i64| n.min(x)));
            }
        };
        for (w, shape) in plan.shapes.iter().enumerate() {
            if plan.tiles.index(w).is_some() {
                continue;
            }
            match *shape {
                Shape::Sliding { length } => {
                    let count = self.slide_count(plan, w);
                    if count > 0 {
                        at(self.time(layout, n - count) + length);
                    }
                }
                Shape::Aligned {
                    length,
                    hop,
                    grace,
                    early,
                } => {
                    let Some(&oldest) = self.held.front() else {
                        continue;
                    };
                    let oldest = oldest as i64;
                    // Dropped once no instance holding it is needed.
                    at(oldest.div_euclid(hop) * hop + hop + length + lag);
                    let start = aligned_shown(length, hop, early, now, wm);
                    let shown = self
                        .members(layout, start, start + length, |_, mark| {
                            mark < start + length + grace
                        })
                        .next()
                        .is_some();
                    // The first instance holding the first later event ends first.
                    let later_end = Some(self.partition_point(layout, |t| t < start + hop))
                        .filter(|&i| i < n)
                        .map(|i| first_start_after(self.time(layout, i) - length, hop) + length);
                    aligned_next(*shape, start, shown, later_end, lag, &mut at);
                }
                Shape::Session { gap, retention, .. } => {
                    for s in &self.sessions[w] {
                        let end = s.last + gap;
                        if end > wm {
                            at(end + lag);
                        }
                        at(end + retention + lag);
                    }
                }
            }
        }
        self.tiles.next_changes(plan, now, wm, &mut at);
        next
    }

    /// Indexes of held events with time in [lo, hi) for which `counts(t, mark)`
    /// (plans with marks only).
    fn members<'a>(
        &'a self,
        layout: Layout,
        lo: i64,
        hi: i64,
        counts: impl Fn(i64, i64) -> bool + Clone + 'a,
    ) -> impl Iterator<Item = usize> + Clone + 'a {
        let a = self.partition_point(layout, |t| t < lo);
        let b = self.partition_point(layout, |t| t < hi);
        (a..b).filter(move |&i| counts(self.time(layout, i), self.mark(layout, i)))
    }

    /// The session shown by session window `w` at watermark `wm`.
    fn shown_session(
        &self,
        w: usize,
        gap: i64,
        retention: i64,
        early: bool,
        wm: i64,
    ) -> Option<Session> {
        self.sessions[w]
            .iter()
            .rev()
            .filter(|s| s.last + gap + retention > wm)
            .find(|s| early || s.last + gap <= wm)
            .copied()
    }

    /// True when every window shows nothing (no event in what the plugin sees).
    pub fn shows_nothing(&self, plan: &Plan, now: i64, wm: i64) -> bool {
        (0..plan.shapes.len()).all(|w| self.shown_count(plan, w, now, wm) == 0)
    }

    fn shown_count(&self, plan: &Plan, w: usize, now: i64, wm: i64) -> usize {
        match plan.shapes[w] {
            _ if plan.tiles.index(w).is_some() => self.tiles.count(plan, w, now, wm),
            Shape::Sliding { .. } => self.slide_count(plan, w),
            _ => self.shown_members(plan, w, now, wm).count(),
        }
    }

    /// Events counted in the instance window `w` (not sliding) shows.
    fn shown_members(
        &self,
        plan: &Plan,
        w: usize,
        now: i64,
        wm: i64,
    ) -> Box<dyn Iterator<Item = usize> + '_> {
        let layout = Layout::of(plan);
        match plan.shapes[w] {
            Shape::Sliding { .. } => unreachable!("sliding windows are incremental"),
            Shape::Aligned {
                length,
                hop,
                grace,
                early,
            } => {
                let start = aligned_shown(length, hop, early, now, wm);
                let end = start + length;
                Box::new(self.members(layout, start, end, move |_, mark| mark < end + grace))
            }
            Shape::Session {
                gap,
                retention,
                grace,
                early,
            } => match self.shown_session(w, gap, retention, early, wm) {
                Some(s) => Box::new(self.members(layout, s.start, s.last + 1, move |t, mark| {
                    t + gap + grace > mark
                })),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    /// The value of aggregation `a` of the plan, at stream time `now` and watermark `wm`.
    pub fn aggregate(&self, plan: &Plan, a: usize, now: i64, wm: i64) -> AggCell {
        let op = &plan.aggs[a];
        let layout = Layout::of(plan);
        if plan.tiles.index(op.window).is_some() {
            return self.tiles.aggregate(plan, a, now, wm);
        }
        let Shape::Sliding { .. } = plan.shapes[op.window] else {
            let members: Vec<usize> = self.shown_members(plan, op.window, now, wm).collect();
            return self.scan(plan, layout, op, &members);
        };
        let w = op.window;
        let held = self.held.len() / layout.stride;
        let n = self.slide_count(plan, w);
        let start = held - n;
        let sum = || {
            let at = plan.slide_words[w] + 1 + 2 * op.state;
            RunningSum::from_words([self.slides[at], self.slides[at + 1]]).value()
        };
        let variance = || {
            let at = plan.slide_words[w] + 1 + 2 * plan.sum_slots[w].len() + 5 * op.state;
            let words = self.slides[at..at + 5].try_into().expect("five words");
            RunningMoments::from_words(words).variance(n)
        };
        match op.kind {
            AggregationKind::Count => AggCell::Int(n as i64),
            AggregationKind::Sum => AggCell::Float(sum()),
            AggregationKind::Mean if n == 0 => AggCell::Null,
            AggregationKind::Mean => AggCell::Float(sum() / n as f64),
            AggregationKind::Variance => variance().map_or(AggCell::Null, AggCell::Float),
            AggregationKind::Stddev => {
                variance().map_or(AggCell::Null, |v| AggCell::Float(v.sqrt()))
            }
            AggregationKind::DistinctCount => {
                let slot = op
                    .slot
                    .expect("validated descriptor: distinct-count has a field");
                let column = self.column(layout, slot);
                let values = (start..held).map(|i| column.get(i));
                let d = &self.distinct[plan.slide_distinct[w] + op.state];
                AggCell::Int(d.count(values, plan.distinct_exact_limit))
            }
            AggregationKind::Events => {
                let first = held - n.min(op.max_events);
                self.raw_events(layout, op, first..held)
            }
            AggregationKind::ApproxQuantile => {
                let members: Vec<usize> = (start..held).collect();
                self.scan(plan, layout, op, &members)
            }
            _ => scan(
                op.kind,
                op.slot.map(|s| self.column(layout, s)),
                op.field_type.unwrap_or(ValueType::Float64),
                start..held,
            ),
        }
    }

    /// The events at `members` (in time order) as an `events` cell: time and
    /// stored value of the aggregation's field.
    fn raw_events(
        &self,
        layout: Layout,
        op: &AggOp,
        members: impl Iterator<Item = usize>,
    ) -> AggCell {
        let column = self.column(
            layout,
            op.slot.expect("validated descriptor: events has a field"),
        );
        AggCell::Events(
            members
                .map(|i| (self.time(layout, i), column.get(i)))
                .collect(),
        )
    }

    /// Aggregation `op` computed over the events at `members` (in time order).
    fn scan(&self, plan: &Plan, layout: Layout, op: &AggOp, members: &[usize]) -> AggCell {
        if op.kind == AggregationKind::Events {
            let newest = &members[members.len() - members.len().min(op.max_events)..];
            return self.raw_events(layout, op, newest.iter().copied());
        }
        if let (AggregationKind::DistinctCount | AggregationKind::ApproxQuantile, Some(slot)) =
            (op.kind, op.slot)
        {
            let column = self.column(layout, slot);
            let values = members.iter().map(|&i| column.get(i));
            return match op.kind {
                AggregationKind::DistinctCount => {
                    AggCell::Int(distinct_count(values, plan.distinct_exact_limit))
                }
                _ => {
                    let kind = op.field_type.unwrap_or(ValueType::Float64);
                    quantile_of(values.map(|x| numeric(x, kind)), op.quantile)
                        .map_or(AggCell::Null, AggCell::Float)
                }
            };
        }
        scan(
            op.kind,
            op.slot.map(|s| self.column(layout, s)),
            op.field_type.unwrap_or(ValueType::Float64),
            members.iter().copied(),
        )
    }
}

/// Adds (`sign` > 0) or removes the event whose stored field `slot` is
/// `cells(slot)` to or from the state of sliding window `w` (`slides` and
/// `distinct`, an entity's), and counts it in or out.
fn account(
    (slides, distinct): (&mut [u64], &mut [SlidingDistinct]),
    plan: &Plan,
    w: usize,
    cells: impl Fn(usize) -> u64,
    sign: i32,
) {
    let base = plan.slide_words[w];
    let n = slides[base] as usize;
    let value = |slot: usize| numeric(cells(slot), plan.stored[slot].1);
    for (i, slot) in plan.sum_slots[w].iter().enumerate() {
        let at = base + 1 + 2 * i;
        let mut sum = RunningSum::from_words([slides[at], slides[at + 1]]);
        let x = value(*slot);
        sum.add(if sign > 0 { x } else { -x });
        slides[at..at + 2].copy_from_slice(&sum.to_words());
    }
    let moments = base + 1 + 2 * plan.sum_slots[w].len();
    for (j, slot) in plan.moment_slots[w].iter().enumerate() {
        let at = moments + 5 * j;
        let words = slides[at..at + 5].try_into().expect("five words");
        let mut m = RunningMoments::from_words(words);
        if sign > 0 {
            m.add(value(*slot), n);
        } else {
            m.remove(value(*slot));
        }
        slides[at..at + 5].copy_from_slice(&m.to_words());
    }
    let states = &mut distinct[plan.slide_distinct[w]..plan.slide_distinct[w + 1]];
    for (d, slot) in states.iter_mut().zip(&plan.distinct_slots[w]) {
        if sign > 0 {
            d.add(cells(*slot), plan.distinct_exact_limit);
        } else {
            d.remove(cells(*slot));
        }
    }
    slides[base] = if sign > 0 { n + 1 } else { n - 1 } as u64;
}

/// An aggregation other than `events` computed over the events at `members`
/// (in time order).
fn scan(
    agg: AggregationKind,
    column: Option<Column<'_>>,
    kind: ValueType,
    members: impl DoubleEndedIterator<Item = usize> + ExactSizeIterator + Clone,
) -> AggCell {
    let values = || {
        members
            .clone()
            .map(move |i| numeric(column.map_or(0, |c| c.get(i)), kind))
    };
    let stored = |i: Option<usize>| match (i, column) {
        (Some(i), Some(c)) => AggCell::Stored(c.get(i)),
        _ => AggCell::Null,
    };
    let float = |x: Option<f64>| x.map_or(AggCell::Null, AggCell::Float);
    match agg {
        AggregationKind::Count => AggCell::Int(members.len() as i64),
        AggregationKind::Sum => {
            let mut s = RunningSum::default();
            values().for_each(|x| s.add(x));
            AggCell::Float(s.value())
        }
        AggregationKind::Mean => {
            let mut s = RunningSum::default();
            values().for_each(|x| s.add(x));
            float((members.len() > 0).then(|| s.value() / members.len() as f64))
        }
        AggregationKind::Min => float(values().reduce(f64::min)),
        AggregationKind::Max => float(values().reduce(f64::max)),
        AggregationKind::Variance => float(variance_of(values())),
        AggregationKind::Stddev => float(variance_of(values()).map(f64::sqrt)),
        AggregationKind::First => stored(members.clone().next()),
        AggregationKind::Last => stored(members.clone().next_back()),
        // Built by `EntityWindow::scan` (they need a field, checked at load).
        AggregationKind::DistinctCount
        | AggregationKind::ApproxQuantile
        | AggregationKind::Events => AggCell::Null,
    }
}
