//! Approximate aggregations with documented error: distinct counts that are
//! exact up to a bound and estimated by a HyperLogLog beyond it, and quantiles
//! estimated by a DDSketch (relative error). Error bounds, and why the window
//! engine computes them as it does: `docs/semantics.md`.
//!
//! - [`SlidingDistinct`]: a sliding window's distinct values, counted
//!   incrementally while there are at most `limit` of them;
//! - [`distinct_count`]: the distinct count of a set of values (exact up to
//!   `limit`), for instances computed at emission and sliding windows past the bound;
//! - [`Hll`]: the HyperLogLog behind the estimate beyond the bound;
//! - [`QuantileSketch`], [`quantile_of`]: the DDSketch behind `approx-quantile`.
//!
//! Both sketches merge exactly (register maxima; bucket counts), the seam for
//! time-bucketed partial aggregates: a merge of per-part sketches equals the
//! sketch of all parts' values.

use rustc_hash::{FxHashMap, FxHashSet};
use sketches_ddsketch::{Config, DDSketch};

/// Default of `[plugin] distinct_exact_limit`: distinct values counted exactly.
pub const DEFAULT_DISTINCT_EXACT_LIMIT: usize = 1000;

/// Index bits of the HyperLogLog: m = 2^12 = 4096 registers (4 KiB).
pub const HLL_PRECISION: u32 = 12;

/// Relative standard error of the distinct-count estimate beyond the bound,
/// 1.04 / sqrt(m) for m = 4096 registers: 1.625%.
pub const DISTINCT_STANDARD_ERROR: f64 = 0.01625;

/// Relative accuracy of `approx-quantile`: the estimate is within 1% of the
/// exact quantile's value (for magnitudes above [`QUANTILE_MIN_MAGNITUDE`]).
pub const QUANTILE_RELATIVE_ERROR: f64 = 0.01;

/// Values of smaller magnitude than this are counted as 0 by the quantile sketch.
pub const QUANTILE_MIN_MAGNITUDE: f64 = 1e-9;

/// DDSketch buckets per sign: enough for every finite magnitude from
/// [`QUANTILE_MIN_MAGNITUDE`] to `f64::MAX` at 1% (about 36,500), so the
/// sketch never collapses buckets and its error bound always holds. Buckets
/// are allocated only over the range of values present (about 115 per decade).
const QUANTILE_MAX_BUCKETS: u32 = 1 << 16;

/// Occurrences per value: inline while there are at most two values (no
/// allocation), then a list sized to them (most entities' windows hold few
/// values: a list costs 16 bytes per value, a hash map about twice that), a
/// hash map past [`ValueCounts::LIST_MAX`] values; or nothing, for a
/// [`SlidingDistinct`] past its bound.
#[derive(Debug, Clone)]
enum ValueCounts {
    Few { len: u8, items: [(u64, u32); 2] },
    List(Vec<(u64, u32)>),
    Many(FxHashMap<u64, u32>),
    Overflowed,
}

impl Default for ValueCounts {
    fn default() -> Self {
        ValueCounts::Few {
            len: 0,
            items: [(0, 0); 2],
        }
    }
}

impl ValueCounts {
    /// Values a list holds at most (searched linearly).
    const LIST_MAX: usize = 32;

    fn len(&self) -> usize {
        match self {
            ValueCounts::Few { len, .. } => usize::from(*len),
            ValueCounts::List(list) => list.len(),
            ValueCounts::Many(map) => map.len(),
            ValueCounts::Overflowed => 0,
        }
    }

    /// Counts one more occurrence of `value`.
    fn increment(&mut self, value: u64) {
        match self {
            ValueCounts::Few { len, items } => {
                let held = &mut items[..usize::from(*len)];
                if let Some(item) = held.iter_mut().find(|(v, _)| *v == value) {
                    item.1 += 1;
                } else if usize::from(*len) < items.len() {
                    items[usize::from(*len)] = (value, 1);
                    *len += 1;
                } else {
                    let mut list = Vec::with_capacity(items.len() + 1);
                    list.extend_from_slice(items);
                    list.push((value, 1));
                    *self = ValueCounts::List(list);
                }
            }
            ValueCounts::List(list) => {
                if let Some(item) = list.iter_mut().find(|(v, _)| *v == value) {
                    item.1 += 1;
                } else if list.len() < Self::LIST_MAX {
                    list.reserve_exact(1);
                    list.push((value, 1));
                } else {
                    let mut map: FxHashMap<u64, u32> = list.drain(..).collect();
                    map.insert(value, 1);
                    *self = ValueCounts::Many(map);
                }
            }
            ValueCounts::Many(map) => *map.entry(value).or_insert(0) += 1,
            ValueCounts::Overflowed => {}
        }
    }

    /// Counts one occurrence of `value` less (it was counted before).
    fn decrement(&mut self, value: u64) {
        match self {
            ValueCounts::Few { len, items } => {
                let n = usize::from(*len);
                if let Some(i) = items[..n].iter().position(|(v, _)| *v == value) {
                    items[i].1 -= 1;
                    if items[i].1 == 0 {
                        items.swap(i, n - 1);
                        *len -= 1;
                    }
                }
            }
            ValueCounts::List(list) => {
                if let Some(i) = list.iter().position(|(v, _)| *v == value) {
                    list[i].1 -= 1;
                    if list[i].1 == 0 {
                        list.swap_remove(i);
                    }
                }
            }
            ValueCounts::Many(map) => {
                if let Some(n) = map.get_mut(&value) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&value);
                    }
                }
            }
            ValueCounts::Overflowed => {}
        }
    }
}

/// Distinct values of one field in one sliding window: exact counts per value
/// while there are at most `limit` of them; past that (`overflowed`), nothing
/// is kept and [`SlidingDistinct::count`] recounts the window's values (exact
/// while at most `limit`, estimated beyond).
#[derive(Debug, Clone, Default)]
pub struct SlidingDistinct {
    exact: ValueCounts,
}

impl SlidingDistinct {
    fn overflowed(&self) -> bool {
        matches!(self.exact, ValueCounts::Overflowed)
    }

    /// Adds one occurrence of `value`.
    pub fn add(&mut self, value: u64, limit: usize) {
        if self.overflowed() {
            return;
        }
        self.exact.increment(value);
        if self.exact.len() > limit {
            self.exact = ValueCounts::Overflowed;
        }
    }

    /// Asks the CPU to start loading the list of values, if the counts are one.
    pub fn prefetch(&self) {
        if let ValueCounts::List(list) = &self.exact {
            super::prefetch(list.first());
        }
    }

    /// Removes one occurrence of `value`, added before.
    pub fn remove(&mut self, value: u64) {
        self.exact.decrement(value);
    }

    /// After removals: once the window holds at most `limit / 2` events
    /// (`values`), counts incrementally again (the half keeps a window that
    /// hovers around the bound from rebuilding at every event).
    pub fn settle(&mut self, values: impl Iterator<Item = u64>, held: usize, limit: usize) {
        if !self.overflowed() || held > limit / 2 {
            return;
        }
        self.exact = ValueCounts::default();
        for value in values {
            self.exact.increment(value);
        }
    }

    /// The distinct count of the window, whose values are `values`.
    pub fn count(&self, values: impl Iterator<Item = u64> + Clone, limit: usize) -> i64 {
        if self.overflowed() {
            distinct_count(values, limit)
        } else {
            self.exact.len() as i64
        }
    }
}

/// The number of distinct `values`: exact when at most `limit`, otherwise the
/// HyperLogLog estimate, kept within [limit + 1, number of values] (both sure).
pub fn distinct_count(values: impl Iterator<Item = u64> + Clone, limit: usize) -> i64 {
    let mut seen = FxHashSet::default();
    for value in values.clone() {
        seen.insert(value);
        if seen.len() > limit {
            break;
        }
    }
    if seen.len() <= limit {
        return seen.len() as i64;
    }
    drop(seen);
    let mut hll = Hll::new();
    let mut n = 0usize;
    for value in values {
        hll.add(value);
        n += 1;
    }
    let estimate = hll.estimate().round() as i64;
    estimate.clamp(limit as i64 + 1, n as i64)
}

/// A HyperLogLog of 2^[`HLL_PRECISION`] registers over 64-bit hashes, with
/// Ertl's improved estimator ("New cardinality estimation algorithms for
/// HyperLogLog sketches", 2017): no bias tables, a relative standard error of
/// about 1.04 / sqrt(m) over the whole range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self::new()
    }
}

impl Hll {
    const M: usize = 1 << HLL_PRECISION;
    /// Hash bits left after the register index.
    const Q: u32 = 64 - HLL_PRECISION;

    /// An empty sketch.
    pub fn new() -> Self {
        Self {
            registers: vec![0; Self::M],
        }
    }

    /// Adds `value` (a stored cell: the hash mixes its bits, so small interned
    /// ids spread like any others).
    pub fn add(&mut self, value: u64) {
        let h = mix(value);
        let index = Self::register(h);
        // Leading zeros of the remaining Q bits, plus one; Q + 1 when all are zero.
        let rest = h << HLL_PRECISION;
        let rank = (rest.leading_zeros().min(Self::Q) + 1) as u8;
        let r = &mut self.registers[index];
        *r = (*r).max(rank);
    }

    /// The register that a value of hash `h` updates.
    fn register(h: u64) -> usize {
        (h >> Self::Q) as usize
    }

    /// The register that `value` updates: values sharing one count once
    /// while the sketch is sparse, the whole error at small counts.
    #[cfg(test)]
    pub fn register_of(value: u64) -> usize {
        Self::register(mix(value))
    }

    /// Adds every value of `other` (same as adding its values here).
    pub fn merge(&mut self, other: &Hll) {
        for (r, o) in self.registers.iter_mut().zip(&other.registers) {
            *r = (*r).max(*o);
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> f64 {
        let q = Self::Q as usize;
        let mut histogram = vec![0u32; q + 2];
        for r in &self.registers {
            histogram[*r as usize] += 1;
        }
        let m = Self::M as f64;
        let mut z = m * tau(1.0 - f64::from(histogram[q + 1]) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        m * m / (2.0 * std::f64::consts::LN_2 * z)
    }
}

/// Ertl's sigma: x + sum over k >= 1 of x^(2^k) * 2^(k-1) (infinite at 1).
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// Ertl's tau: (1 - x - sum over k >= 1 of (1 - x^(2^-k))^2 * 2^-k) / 3.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// A bijective 64-bit mix (the SplitMix64 finalizer): distinct cells never
/// share a hash, and every bit of the hash depends on every bit of the cell.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A DDSketch (sketches-ddsketch) with Wafer's fixed accuracy: 1% relative
/// error, no bucket collapsing.
#[derive(Clone)]
pub struct QuantileSketch(DDSketch);

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QuantileSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantileSketch")
            .field("count", &self.0.count())
            .finish()
    }
}

impl QuantileSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self(DDSketch::new(Config::new(
            QUANTILE_RELATIVE_ERROR,
            QUANTILE_MAX_BUCKETS,
            QUANTILE_MIN_MAGNITUDE,
        )))
    }

    /// Adds a (finite) value.
    pub fn add(&mut self, x: f64) {
        self.0.add(x);
    }

    /// Adds every value of `other` (same as adding its values here).
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.0
            .merge(&other.0)
            .expect("quantile sketches share one configuration");
    }

    /// The estimate of quantile `q` (in [0, 1]); `None` when empty. The exact
    /// quantile is the value of 0-based rank floor(q * (n - 1)) in ascending
    /// order; q = 0 and q = 1 give the exact minimum and maximum. The estimate
    /// is kept within [minimum, maximum], which holds the exact quantile, so
    /// that only brings it closer (a window of one value gives that value).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let estimate = self
            .0
            .quantile(q)
            .expect("quantile validated to be in [0, 1] at load")?;
        Some(estimate.clamp(self.0.min()?, self.0.max()?))
    }
}

/// The estimate of quantile `q` of `values` (see [`QuantileSketch::quantile`]).
pub fn quantile_of(values: impl Iterator<Item = f64>, q: f64) -> Option<f64> {
    let mut sketch = QuantileSketch::new();
    values.for_each(|x| sketch.add(x));
    sketch.quantile(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Through inline, list and map forms, the counts say how many values
        /// occur, as a plain map of counts does.
        #[test]
        fn value_counts_track_a_map_of_counts(
            steps in proptest::collection::vec((0u64..48, proptest::bool::weighted(0.35)), 1..400),
        ) {
            let mut counts = ValueCounts::default();
            let mut naive = std::collections::BTreeMap::<u64, u32>::new();
            for (value, remove) in steps {
                match naive.get_mut(&value) {
                    Some(n) if remove => {
                        counts.decrement(value);
                        *n -= 1;
                        if *n == 0 {
                            naive.remove(&value);
                        }
                    }
                    _ => {
                        counts.increment(value);
                        *naive.entry(value).or_insert(0) += 1;
                    }
                }
                proptest::prop_assert_eq!(counts.len(), naive.len());
            }
        }
    }

    /// Deterministic pseudo-random u64s (SplitMix64 from `seed`).
    fn stream(seed: u64) -> impl Iterator<Item = u64> {
        let mut state = seed;
        std::iter::repeat_with(move || {
            state = state.wrapping_add(1);
            mix(state)
        })
    }

    /// The exact quantile: 0-based rank floor(q * (n - 1)) of the sorted values.
    fn exact_quantile(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v[(q * (v.len() as f64 - 1.0)) as usize]
    }

    #[test]
    fn standard_error_is_the_documented_one() {
        assert!(
            (1.04 / f64::from(1u32 << HLL_PRECISION).sqrt() - DISTINCT_STANDARD_ERROR).abs()
                < 1e-12
        );
    }

    #[test]
    fn distinct_counts_are_exact_up_to_the_limit() {
        // 10 values, each 3 times: 10 distinct.
        let values: Vec<u64> = (0..30).map(|i| i % 10).collect();
        assert_eq!(distinct_count(values.iter().copied(), 10), 10);
        assert_eq!(distinct_count(values.iter().copied(), 1000), 10);
        assert_eq!(distinct_count(std::iter::empty(), 0), 0);
        // Past the limit the estimate is at least limit + 1 and at most the
        // number of values; 10 distinct values among 4096 registers are all
        // told apart (the estimate rounds to 10).
        assert_eq!(distinct_count(values.iter().copied(), 5), 10);
        assert_eq!(distinct_count([7, 7, 7].into_iter(), 0), 1);
    }

    #[test]
    fn hll_relative_error_matches_its_standard_error() {
        // Over 40 independent sets per size, the root-mean-square relative
        // error is the standard error 1.04 / sqrt(m) = 1.6%, with room for
        // sampling noise (of 40 squared errors: about +-25%): at most 1.5x.
        // Fixed seeds: the test is deterministic.
        for n in [2_000usize, 5_000, 12_000, 50_000] {
            let mut squares = 0.0;
            let mut worst: f64 = 0.0;
            let trials = 40;
            for seed in 0..trials {
                let mut hll = Hll::new();
                stream(seed * 1_000_003 + n as u64)
                    .take(n)
                    .for_each(|v| hll.add(v));
                let e = hll.estimate() / n as f64 - 1.0;
                squares += e * e;
                worst = worst.max(e.abs());
            }
            let rms = (squares / trials as f64).sqrt();
            assert!(
                rms <= 1.5 * DISTINCT_STANDARD_ERROR,
                "n = {n}: rms relative error {rms}"
            );
            assert!(
                worst <= 4.0 * DISTINCT_STANDARD_ERROR,
                "n = {n}: worst relative error {worst}"
            );
        }
        assert_eq!(Hll::new().estimate(), 0.0);
    }

    #[test]
    fn small_interned_ids_spread_like_random_values() {
        // Text cells are small consecutive ids: the hash must mix them.
        for n in [1_500u64, 20_000, 200_000] {
            let got = distinct_count((0..n).chain(0..n / 2), 1000) as f64;
            let error = (got / n as f64 - 1.0).abs();
            assert!(
                error <= 4.0 * DISTINCT_STANDARD_ERROR,
                "n = {n}: {got} ({error})"
            );
        }
    }

    #[test]
    fn merged_sketches_equal_the_sketch_of_all_values() {
        let (mut a, mut b, mut all) = (Hll::new(), Hll::new(), Hll::new());
        for (i, v) in stream(7).take(30_000).enumerate() {
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);

        let values: Vec<f64> = stream(8)
            .take(5_000)
            .map(|v| (v % 100_000) as f64 / 7.0 - 3_000.0)
            .collect();
        let (mut a, mut b, mut all) = (
            QuantileSketch::new(),
            QuantileSketch::new(),
            QuantileSketch::new(),
        );
        for (i, x) in values.iter().enumerate() {
            if i % 2 == 0 {
                a.add(*x)
            } else {
                b.add(*x)
            }
            all.add(*x);
        }
        a.merge(&b);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.quantile(q), all.quantile(q), "q = {q}");
        }
    }

    #[test]
    fn sliding_distinct_switches_to_recounting_past_the_limit_and_back() {
        let limit = 4;
        let mut d = SlidingDistinct::default();
        let mut window: Vec<u64> = Vec::new();
        for v in [1, 2, 2, 3, 4] {
            d.add(v, limit);
            window.push(v);
        }
        assert_eq!(d.count(window.iter().copied(), limit), 4);
        // A fifth distinct value: past the limit, counted from the window.
        d.add(5, limit);
        window.push(5);
        assert_eq!(d.count(window.iter().copied(), limit), 5);
        // Events leave; the window's recount stays exact once back at the limit.
        for _ in 0..2 {
            d.remove(window.remove(0));
        }
        d.settle(window.iter().copied(), window.len(), limit);
        assert_eq!(window, [2, 3, 4, 5]);
        assert_eq!(d.count(window.iter().copied(), limit), 4);
        // At limit / 2 events it counts incrementally again.
        for _ in 0..2 {
            d.remove(window.remove(0));
        }
        d.settle(window.iter().copied(), window.len(), limit);
        assert!(!d.overflowed());
        assert_eq!(d.count(std::iter::empty(), limit), 2);
        d.add(4, limit);
        assert_eq!(d.count(std::iter::empty(), limit), 2);
    }

    #[test]
    fn quantiles_at_hand_worked_values() {
        // 1..=100: rank floor(0.5 * 99) = 49 holds 50; floor(0.9 * 99) = 89 holds 90.
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        for (q, exact) in [(0.5, 50.0), (0.9, 90.0), (0.0, 1.0), (1.0, 100.0)] {
            assert_eq!(exact_quantile(&values, q), exact);
            let got = quantile_of(values.iter().copied(), q).unwrap();
            assert!(
                (got - exact).abs() <= QUANTILE_RELATIVE_ERROR * exact,
                "q {q}: {got}"
            );
        }
        // The extremes are exact.
        assert_eq!(quantile_of(values.iter().copied(), 0.0), Some(1.0));
        assert_eq!(quantile_of(values.iter().copied(), 1.0), Some(100.0));
        // Negative values, zero and tiny magnitudes: {-8, -2, 0, 1e-12, 3}.
        let mixed = [3.0, -8.0, 1e-12, 0.0, -2.0];
        let at = |q| quantile_of(mixed.iter().copied(), q).unwrap();
        assert!((at(0.25) + 2.0).abs() <= 0.02, "{}", at(0.25)); // rank 1: -2
        assert_eq!(at(0.5), 0.0); // rank 2: 0
        assert_eq!(at(0.75), 0.0); // rank 3: 1e-12, below the smallest magnitude: 0
        assert_eq!(quantile_of(std::iter::empty(), 0.5), None);
        // Kept within [min, max]: one value, or equal values, give it exactly.
        assert_eq!(quantile_of([1.0].into_iter(), 0.5), Some(1.0));
        assert_eq!(quantile_of([7.3; 4].into_iter(), 0.3), Some(7.3));
    }

    #[test]
    fn quantile_error_holds_over_every_finite_magnitude() {
        // Values from just above the smallest magnitude to f64::MAX in one
        // sketch: no bucket is collapsed, so every rank keeps its 1% bound.
        let mut values = vec![
            2e-9,
            3e-9,
            1.0,
            1e100,
            f64::MAX / 2.0,
            f64::MAX,
            -1e-5,
            -1e300,
        ];
        values.extend(stream(3).take(2_000).map(f64::from_bits));
        values.retain(|x| x.is_finite());
        for i in 0..=40 {
            let q = f64::from(i) / 40.0;
            let exact = exact_quantile(&values, q);
            let got = quantile_of(values.iter().copied(), q).unwrap();
            let bound = QUANTILE_RELATIVE_ERROR * exact.abs() * (1.0 + 1e-9);
            let bound = if exact.abs() <= QUANTILE_MIN_MAGNITUDE {
                QUANTILE_MIN_MAGNITUDE
            } else {
                bound
            };
            assert!((got - exact).abs() <= bound, "q {q}: {got} vs {exact}");
        }
    }
}
