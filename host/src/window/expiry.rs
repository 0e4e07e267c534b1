//! The expiry index of a partition: slot ids by the time of their next change,
//! as a calendar queue. Times within [`SPAN_BUCKETS`] buckets of the earliest
//! go to one vector per bucket of `width` ms; the bucket due next is sorted
//! once when it becomes the head and then popped in order. Re-keying an entity
//! is a push instead of a removal and an insertion in an ordered tree of every
//! entity (whose cache misses dominated advancing stream time).
//!
//! Entries are never removed in place: the owner re-keys an entity by pushing
//! its new time and [`Expiries::forget`]-ting the old one, and [`Expiries::pop_due`]
//! skips the entries its `live` check rejects. Entries come out in (time, id)
//! order, as from an ordered set.

use std::collections::{BTreeSet, VecDeque};

/// Buckets the wheel spans past its head; later times wait in an ordered set.
pub const SPAN_BUCKETS: i64 = 1024;

/// Stale entries tolerated beyond the live ones before they are swept.
const STALE_SLACK: usize = 4096;

pub struct Expiries {
    width: i64,
    /// Bucket number (time / `width`) of `wheel[0]`.
    base: i64,
    wheel: VecDeque<Vec<(i64, u32)>>,
    /// `wheel[0]` is sorted, latest first (it is popped from its end).
    head_sorted: bool,
    /// Times past the wheel's span.
    far: BTreeSet<(i64, u32)>,
    live: usize,
    stale: usize,
}

impl Expiries {
    /// An empty index whose buckets span `width` ms (at least 1).
    pub fn new(width: i64) -> Self {
        Self {
            width: width.max(1),
            base: 0,
            wheel: VecDeque::new(),
            head_sorted: false,
            far: BTreeSet::new(),
            live: 0,
            stale: 0,
        }
    }

    /// Adds `id`, due at `at`.
    pub fn push(&mut self, at: i64, id: u32) {
        self.live += 1;
        let bucket = at.div_euclid(self.width);
        if self.wheel.is_empty() {
            self.base = bucket;
            self.head_sorted = false;
        }
        if bucket < self.base {
            if self.base.saturating_sub(bucket) > SPAN_BUCKETS {
                self.far.insert((at, id));
                return;
            }
            for _ in bucket..self.base {
                self.wheel.push_front(Vec::new());
            }
            self.base = bucket;
            self.head_sorted = false;
        }
        let i = bucket.saturating_sub(self.base);
        if i > SPAN_BUCKETS {
            self.far.insert((at, id));
            return;
        }
        let i = i as usize;
        if self.wheel.len() <= i {
            self.wheel.resize_with(i + 1, Vec::new);
        }
        let entries = &mut self.wheel[i];
        if i == 0 && self.head_sorted {
            let pos = entries.partition_point(|e| *e > (at, id));
            entries.insert(pos, (at, id));
        } else {
            entries.push((at, id));
        }
    }

    /// Records that an entry pushed earlier is no longer live (its entity was
    /// re-keyed or dropped); it is skipped when reached.
    pub fn forget(&mut self) {
        self.live -= 1;
        self.stale += 1;
    }

    /// Whether stale entries outnumber live ones by enough to sweep them.
    pub fn needs_sweep(&self) -> bool {
        self.stale > self.live + STALE_SLACK
    }

    /// Drops every entry `live` rejects (stale ones).
    pub fn sweep(&mut self, live: impl Fn(i64, u32) -> bool) {
        for entries in &mut self.wheel {
            entries.retain(|&(at, id)| live(at, id));
        }
        self.far.retain(|&(at, id)| live(at, id));
        self.stale = 0;
    }

    /// Removes and returns the earliest live entry due at or before `now`;
    /// stale entries met on the way (rejected by `live`) are dropped.
    pub fn pop_due(&mut self, now: i64, live: impl Fn(i64, u32) -> bool) -> Option<(i64, u32)> {
        loop {
            let near = self.head();
            let far = self.far.first().copied();
            let (entry, from_far) = match (near, far) {
                (Some(n), Some(f)) if f < n => (f, true),
                (Some(n), _) => (n, false),
                (None, Some(f)) => (f, true),
                (None, None) => return None,
            };
            if entry.0 > now {
                return None;
            }
            if from_far {
                self.far.pop_first();
            } else {
                self.wheel[0].pop();
            }
            if live(entry.0, entry.1) {
                self.live -= 1;
                return Some(entry);
            }
            self.stale -= 1;
        }
    }

    /// The ids due next, earliest first, as far as the head bucket and the
    /// one after it go (stale ones included): for prefetching.
    pub fn soon(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.head();
        let head = self.wheel.front().into_iter().flat_map(|b| b.iter().rev());
        let next = self.wheel.get(1).into_iter().flatten();
        head.chain(next).map(|&(_, id)| id)
    }

    /// The earliest entry of the wheel: drops empty leading buckets and sorts
    /// the head.
    fn head(&mut self) -> Option<(i64, u32)> {
        while self.wheel.front().is_some_and(Vec::is_empty) {
            self.wheel.pop_front();
            self.base += 1;
            self.head_sorted = false;
        }
        let head = self.wheel.front_mut()?;
        if !self.head_sorted {
            head.sort_unstable_by(|a, b| b.cmp(a));
            self.head_sorted = true;
        }
        head.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Re-key entity `id` (0 to 63) to `now + delta`.
        Rekey(u32, i64),
        /// Drop entity `id` (0 to 63).
        Drop(u32),
        /// Advance `now` by this much and pop what is due.
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..64, 1i64..5_000).prop_map(|(i, d)| Op::Rekey(i, d)),
            1 => (0u32..64, 1i64..5_000_000).prop_map(|(i, d)| Op::Rekey(i, d)),
            1 => (0u32..64).prop_map(Op::Drop),
            3 => (0i64..400).prop_map(Op::Advance),
            1 => (0i64..200_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against an ordered set of the live entries: the same entries come
        /// out, in the same order, at the same `now`.
        #[test]
        fn pops_what_an_ordered_set_pops(width in 1i64..300, ops in prop::collection::vec(op(), 1..400)) {
            let mut q = Expiries::new(width);
            let mut reference = BTreeSet::new();
            let mut current: Vec<Option<i64>> = vec![None; 64];
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Rekey(id, delta) => {
                        if let Some(old) = current[id as usize].take() {
                            reference.remove(&(old, id));
                            q.forget();
                        }
                        current[id as usize] = Some(now + delta);
                        reference.insert((now + delta, id));
                        q.push(now + delta, id);
                    }
                    Op::Drop(id) => {
                        if let Some(old) = current[id as usize].take() {
                            reference.remove(&(old, id));
                            q.forget();
                        }
                    }
                    Op::Advance(by) => {
                        now += by;
                        let mut want = Vec::new();
                        while let Some(&(at, id)) = reference.first() {
                            if at > now {
                                break;
                            }
                            reference.pop_first();
                            want.push((at, id));
                        }
                        let mut got = Vec::new();
                        while let Some(e) = q.pop_due(now, |at, id| current[id as usize] == Some(at)) {
                            current[e.1 as usize] = None;
                            got.push(e);
                        }
                        prop_assert_eq!(got, want);
                    }
                }
                if q.needs_sweep() {
                    q.sweep(|at, id| current[id as usize] == Some(at));
                }
                prop_assert_eq!(q.live, reference.len());
            }
        }
    }

    #[test]
    fn stale_entries_are_swept_once_they_outnumber_live_ones() {
        let mut q = Expiries::new(10);
        let mut at = 1_000;
        q.push(at, 0);
        for n in 1..=STALE_SLACK + 2 {
            assert!(!q.needs_sweep(), "{n} stale entries");
            q.forget();
            at += 1;
            q.push(at, 0);
        }
        assert!(q.needs_sweep());
        q.sweep(|t, _| t == at);
        assert!(!q.needs_sweep());
        let held: usize = q.wheel.iter().map(Vec::len).sum::<usize>() + q.far.len();
        assert_eq!(held, 1);
        assert_eq!(q.pop_due(at, |t, _| t == at), Some((at, 0)));
        assert_eq!(q.pop_due(i64::MAX, |_, _| true), None);
    }
}
