//! One entity's window state: the events it still needs, sorted by event time
//! (ties in arrival order), each with the watermark it arrived at; the
//! incremental aggregates of its sliding windows; and its sessions.
//!
//! Sliding windows are aggregated incrementally (they change at every event
//! and every advance of stream time). Tumbling, hopping and session windows
//! are aggregated when emitted, over the events of the instance being shown:
//! an event counts in an instance when its time lies in it and the instance
//! was still open (watermark < end + grace) when the event arrived.

use std::collections::VecDeque;

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

/// Incremental state of one sliding window: it covers the newest `count` events.
#[derive(Debug, Clone, Default)]
struct SlideAgg {
    count: usize,
    sums: Vec<RunningSum>,
    moments: Vec<RunningMoments>,
    distinct: Vec<SlidingDistinct>,
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
fn first_start_after(x: i64, hop: i64) -> i64 {
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

/// An entity's events and the state of every window over them.
#[derive(Debug, Clone)]
pub struct EntityWindow {
    /// Event times, ascending; equal times keep arrival order.
    times: VecDeque<i64>,
    /// Offsets, parallel to `times`.
    offsets: VecDeque<i64>,
    /// Watermark at each event's arrival, parallel to `times`.
    marks: VecDeque<i64>,
    /// One column per stored field, parallel to `times`.
    cells: Vec<VecDeque<u64>>,
    slides: Vec<SlideAgg>,
    /// Per window (session windows only): sessions by start.
    sessions: Vec<Vec<Session>>,
    /// The tiled sliding windows (their events are not in `times`).
    pub(super) tiles: Tiles,
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
            offsets: VecDeque::new(),
            marks: VecDeque::new(),
            cells: vec![VecDeque::new(); plan.stored.len()],
            slides: (0..plan.shapes.len())
                .map(|w| SlideAgg {
                    count: 0,
                    sums: vec![RunningSum::default(); plan.sum_slots[w].len()],
                    moments: vec![RunningMoments::default(); plan.moment_slots[w].len()],
                    distinct: vec![SlidingDistinct::default(); plan.distinct_slots[w].len()],
                })
                .collect(),
            sessions: vec![Vec::new(); plan.shapes.len()],
            tiles: Tiles::new(plan),
        }
    }

    /// True when the entity holds no event, no session and no tile.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty() && self.sessions.iter().all(Vec::is_empty) && self.tiles.is_empty()
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Inserts an event at time `t` read at `offset`, arriving at stream time
    /// `now` and watermark `wm`, counted by the windows whose `verdicts` say
    /// so (tiled windows excepted: see [`Tiles::insert`]). Returns true when a
    /// value shown to the plugin may have changed.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        plan: &Plan,
        t: i64,
        offset: i64,
        cells: &[u64],
        now: i64,
        wm: i64,
        verdicts: &[Verdict],
    ) -> bool {
        let pos = self.times.partition_point(|x| *x <= t);
        self.times.insert(pos, t);
        self.offsets.insert(pos, offset);
        self.marks.insert(pos, wm);
        for (column, cell) in self.cells.iter_mut().zip(cells) {
            column.insert(pos, *cell);
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
                    self.account(plan, w, cells, 1);
                    self.slides[w].count += 1;
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
    /// any more are dropped (`dropped` gets each dropped event's offset).
    pub fn advance(&mut self, plan: &Plan, now: i64, wm: i64, dropped: &mut impl FnMut(i64)) {
        let mut row = vec![0u64; self.cells.len()];
        for (w, shape) in plan.shapes.iter().enumerate() {
            let Shape::Sliding { length } = *shape else {
                continue;
            };
            while self.slides[w].count > 0 {
                let i = self.times.len() - self.slides[w].count;
                if self.times[i] > now - length {
                    break;
                }
                for (cell, column) in row.iter_mut().zip(&self.cells) {
                    *cell = column[i];
                }
                self.account(plan, w, &row, -1);
                self.slides[w].count -= 1;
            }
            let held = self.slides[w].count;
            let first = self.times.len() - held;
            for (d, slot) in self.slides[w]
                .distinct
                .iter_mut()
                .zip(&plan.distinct_slots[w])
            {
                let values = self.cells[*slot].range(first..).copied();
                d.settle(values, held, plan.distinct_exact_limit);
            }
        }
        let mut keep_from = i64::MAX;
        for (w, shape) in plan.shapes.iter().enumerate() {
            let from = match *shape {
                Shape::Sliding { .. } => {
                    let count = self.slides[w].count;
                    if count == 0 {
                        i64::MAX
                    } else {
                        self.times[self.times.len() - count]
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
        while self.times.front().is_some_and(|t| *t < keep_from) {
            self.times.pop_front();
            self.marks.pop_front();
            dropped(self.offsets.pop_front().expect("parallel to times"));
            for column in &mut self.cells {
                column.pop_front();
            }
        }
    }

    /// The earliest stream time at which a value shown may change or some
    /// state may be dropped, given stream time `now` and watermark `wm`.
    pub fn next_change(&self, plan: &Plan, now: i64, wm: i64) -> Option<i64> {
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
            match *shape {
                Shape::Sliding { length } => {
                    let count = self.slides[w].count;
                    if count > 0 {
                        at(self.times[self.times.len() - count] + length);
                    }
                }
                Shape::Aligned {
                    length,
                    hop,
                    grace,
                    early,
                } => {
                    let Some(&oldest) = self.times.front() else {
                        continue;
                    };
                    // Dropped once no instance holding it is needed.
                    at(oldest.div_euclid(hop) * hop + hop + length + lag);
                    let start = aligned_shown(length, hop, early, now, wm);
                    let shown = self
                        .members(start, start + length, |_, mark| {
                            mark < start + length + grace
                        })
                        .next()
                        .is_some();
                    let later = self
                        .times
                        .range(self.times.partition_point(|t| *t < start + hop)..)
                        .next()
                        .copied();
                    if early {
                        // The instance holding T that ends first moves on once T
                        // reaches its end.
                        if shown || later.is_some() {
                            at(start + length);
                        }
                    } else if shown {
                        at(start + length + hop + lag);
                    } else if let Some(t) = later {
                        // The first instance holding `t` fires at its end.
                        let end = first_start_after(t - length, hop) + length;
                        at(end.max(start + length + hop) + lag);
                    }
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
        if let Some(x) = self.tiles.next_change(plan) {
            at(x);
        }
        next
    }

    fn account(&mut self, plan: &Plan, w: usize, cells: &[u64], sign: i32) {
        let agg = &mut self.slides[w];
        for (sum, slot) in agg.sums.iter_mut().zip(&plan.sum_slots[w]) {
            let x = numeric(cells[*slot], plan.stored[*slot].1);
            sum.add(if sign > 0 { x } else { -x });
        }
        for (m, slot) in agg.moments.iter_mut().zip(&plan.moment_slots[w]) {
            let x = numeric(cells[*slot], plan.stored[*slot].1);
            if sign > 0 {
                m.add(x, agg.count);
            } else {
                m.remove(x);
            }
        }
        for (distinct, slot) in agg.distinct.iter_mut().zip(&plan.distinct_slots[w]) {
            if sign > 0 {
                distinct.add(cells[*slot], plan.distinct_exact_limit);
            } else {
                distinct.remove(cells[*slot]);
            }
        }
    }

    /// Indexes of held events with time in [lo, hi) for which `counts(t, mark)`.
    fn members<'a>(
        &'a self,
        lo: i64,
        hi: i64,
        counts: impl Fn(i64, i64) -> bool + Clone + 'a,
    ) -> impl Iterator<Item = usize> + Clone + 'a {
        let a = self.times.partition_point(|t| *t < lo);
        let b = self.times.partition_point(|t| *t < hi);
        (a..b).filter(move |&i| counts(self.times[i], self.marks[i]))
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
            Shape::Sliding { .. } if plan.tiles.index(w).is_some() => self.tiles.count(plan, w),
            Shape::Sliding { .. } => self.slides[w].count,
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
                Box::new(self.members(start, end, move |_, mark| mark < end + grace))
            }
            Shape::Session {
                gap,
                retention,
                grace,
                early,
            } => match self.shown_session(w, gap, retention, early, wm) {
                Some(s) => Box::new(
                    self.members(s.start, s.last + 1, move |t, mark| t + gap + grace > mark),
                ),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    /// The value of aggregation `a` of the plan, at stream time `now` and watermark `wm`.
    pub fn aggregate(&self, plan: &Plan, a: usize, now: i64, wm: i64) -> AggCell {
        let op = &plan.aggs[a];
        if plan.tiles.index(op.window).is_some() {
            return self.tiles.aggregate(plan, a);
        }
        let Shape::Sliding { .. } = plan.shapes[op.window] else {
            let members: Vec<usize> = self.shown_members(plan, op.window, now, wm).collect();
            return self.scan(plan, op, &members);
        };
        let agg = &self.slides[op.window];
        let start = self.times.len() - agg.count;
        let n = agg.count;
        match op.kind {
            AggregationKind::Count => AggCell::Int(n as i64),
            AggregationKind::Sum => AggCell::Float(agg.sums[op.state].value()),
            AggregationKind::Mean if n == 0 => AggCell::Null,
            AggregationKind::Mean => AggCell::Float(agg.sums[op.state].value() / n as f64),
            AggregationKind::Variance => agg.moments[op.state]
                .variance(n)
                .map_or(AggCell::Null, AggCell::Float),
            AggregationKind::Stddev => agg.moments[op.state]
                .variance(n)
                .map_or(AggCell::Null, |v| AggCell::Float(v.sqrt())),
            AggregationKind::DistinctCount => {
                let slot = op
                    .slot
                    .expect("validated descriptor: distinct-count has a field");
                let values = self.cells[slot].range(start..).copied();
                AggCell::Int(agg.distinct[op.state].count(values, plan.distinct_exact_limit))
            }
            AggregationKind::Events => {
                let first = self.times.len() - n.min(op.max_events);
                self.raw_events(op, first..self.times.len())
            }
            _ => {
                let members: Vec<usize> = (start..self.times.len()).collect();
                self.scan(plan, op, &members)
            }
        }
    }

    /// The events at `members` (in time order) as an `events` cell: time and
    /// stored value of the aggregation's field.
    fn raw_events(&self, op: &AggOp, members: impl Iterator<Item = usize>) -> AggCell {
        let column = &self.cells[op.slot.expect("validated descriptor: events has a field")];
        AggCell::Events(members.map(|i| (self.times[i], column[i])).collect())
    }

    /// Aggregation `op` computed over the events at `members` (in time order).
    fn scan(&self, plan: &Plan, op: &AggOp, members: &[usize]) -> AggCell {
        if op.kind == AggregationKind::Events {
            let newest = &members[members.len() - members.len().min(op.max_events)..];
            return self.raw_events(op, newest.iter().copied());
        }
        if let (AggregationKind::DistinctCount | AggregationKind::ApproxQuantile, Some(slot)) =
            (op.kind, op.slot)
        {
            let column = &self.cells[slot];
            let values = members.iter().map(|&i| column[i]);
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
            op.slot.map(|s| &self.cells[s]),
            op.field_type.unwrap_or(ValueType::Float64),
            members,
        )
    }
}

/// An aggregation other than `events` computed over the events at `members`
/// (in time order).
fn scan(
    agg: AggregationKind,
    column: Option<&VecDeque<u64>>,
    kind: ValueType,
    members: &[usize],
) -> AggCell {
    let values = || {
        members
            .iter()
            .map(move |&i| numeric(column.map_or(0, |c| c[i]), kind))
    };
    let stored = |i: Option<&usize>| match (i, column) {
        (Some(&i), Some(c)) => AggCell::Stored(c[i]),
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
            float((!members.is_empty()).then(|| s.value() / members.len() as f64))
        }
        AggregationKind::Min => float(values().reduce(f64::min)),
        AggregationKind::Max => float(values().reduce(f64::max)),
        AggregationKind::Variance => float(variance_of(values())),
        AggregationKind::Stddev => float(variance_of(values()).map(f64::sqrt)),
        AggregationKind::First => stored(members.first()),
        AggregationKind::Last => stored(members.last()),
        // Built by `EntityWindow::scan` (they need a field, checked at load).
        AggregationKind::DistinctCount
        | AggregationKind::ApproxQuantile
        | AggregationKind::Events => AggCell::Null,
    }
}
