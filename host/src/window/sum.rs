//! Running sums that stay exact enough under many additions and removals:
//! [`RunningSum`] for sums and means, [`RunningMoments`] for variance.

/// Neumaier-compensated sum: adding and later subtracting the same values
/// returns to the start with an error near one rounding, not one per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningSum {
    sum: f64,
    compensation: f64,
}

impl RunningSum {
    /// Adds `x`.
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The current sum.
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }

    /// The sum as two words (kept in an entity's slide words).
    pub fn to_words(self) -> [u64; 2] {
        [self.sum.to_bits(), self.compensation.to_bits()]
    }

    /// The sum stored by [`RunningSum::to_words`].
    pub fn from_words([sum, compensation]: [u64; 2]) -> Self {
        Self {
            sum: f64::from_bits(sum),
            compensation: f64::from_bits(compensation),
        }
    }

    /// Adds every value `other` summed.
    pub fn merge(&mut self, other: &RunningSum) {
        self.add(other.sum);
        self.add(other.compensation);
    }
}

/// Removable first and second moments for the population variance of a
/// sliding window.
///
/// Values are shifted by the first value the window held since it was last
/// empty (`shift`, close to the mean in practice), and the shifted sum and sum
/// of squares are Neumaier-compensated. Variance is then
/// `(S2 - S1^2 / n) / n`: the shift keeps S1 small, which avoids the
/// catastrophic cancellation of the textbook formula on values with a large
/// mean, and removal subtracts exactly the terms that were added. (Welford's
/// update is not used: its removal step accumulates rounding with every pair.)
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningMoments {
    shift: f64,
    s1: RunningSum,
    s2: RunningSum,
}

impl RunningMoments {
    /// Adds `x` to a window that held `n_before` values.
    pub fn add(&mut self, x: f64, n_before: usize) {
        if n_before == 0 {
            *self = Self {
                shift: x,
                ..Self::default()
            };
        }
        let d = x - self.shift;
        self.s1.add(d);
        self.s2.add(d * d);
    }

    /// The moments as five words (kept in an entity's slide words).
    pub fn to_words(self) -> [u64; 5] {
        let [a, b] = self.s1.to_words();
        let [c, d] = self.s2.to_words();
        [self.shift.to_bits(), a, b, c, d]
    }

    /// The moments stored by [`RunningMoments::to_words`].
    pub fn from_words([shift, a, b, c, d]: [u64; 5]) -> Self {
        Self {
            shift: f64::from_bits(shift),
            s1: RunningSum::from_words([a, b]),
            s2: RunningSum::from_words([c, d]),
        }
    }

    /// Adds the `n_other` values of `other` to the `n` held here: their
    /// shifted sums are moved to this shift (S1 + k·δ, S2 + 2δ·S1 + k·δ²).
    pub fn merge(&mut self, n: usize, other: &RunningMoments, n_other: usize) {
        if n == 0 {
            *self = *other;
            return;
        }
        let delta = other.shift - self.shift;
        let (s1, s2, k) = (other.s1.value(), other.s2.value(), n_other as f64);
        self.s1.add(s1);
        self.s1.add(k * delta);
        self.s2.add(s2);
        self.s2.add(2.0 * delta * s1);
        self.s2.add(k * delta * delta);
    }

    /// Removes `x`, which was added before.
    pub fn remove(&mut self, x: f64) {
        let d = x - self.shift;
        self.s1.add(-d);
        self.s2.add(-(d * d));
    }

    /// Population variance of the `n` values held; `None` when `n` is 0.
    pub fn variance(&self, n: usize) -> Option<f64> {
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let s1 = self.s1.value();
        Some(((self.s2.value() - s1 * s1 / n) / n).max(0.0))
    }

    /// Mean and sum of squared deviations from it of the `n` values held
    /// (for merging); `None` when `n` is 0.
    pub fn mean_m2(&self, n: usize) -> Option<(f64, f64)> {
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let s1 = self.s1.value();
        Some((
            self.shift + s1 / n,
            (self.s2.value() - s1 * s1 / n).max(0.0),
        ))
    }
}

/// Population variance of `values` by two passes (mean, then squared
/// deviations, both compensated); `None` when empty.
pub fn variance_of(values: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let mut n = 0usize;
    let mut sum = RunningSum::default();
    for x in values.clone() {
        n += 1;
        sum.add(x);
    }
    if n == 0 {
        return None;
    }
    let mean = sum.value() / n as f64;
    let mut squares = RunningSum::default();
    for x in values {
        squares.add((x - mean) * (x - mean));
    }
    Some(squares.value() / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_survive_a_large_mean_and_removals() {
        // Values around 1e9 with a spread of a few units: the textbook
        // sum-of-squares formula loses every digit here.
        let xs: Vec<f64> = (0..1000).map(|i| 1e9 + f64::from(i % 7) * 0.5).collect();
        let mut m = RunningMoments::default();
        for (i, x) in xs.iter().enumerate() {
            m.add(*x, i);
        }
        for x in &xs[..600] {
            m.remove(*x);
        }
        let want = variance_of(xs[600..].iter().copied()).unwrap();
        let got = m.variance(400).unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
        assert_eq!(m.variance(0), None);
        assert_eq!(variance_of([3.0].into_iter()), Some(0.0));
    }

    #[test]
    fn merged_moments_give_the_variance_of_all_the_values() {
        let (a, b) = ([1e9 + 1.0, 1e9 + 2.5, 1e9 - 3.0], [1e9 + 7.0, 1e9 + 0.25]);
        let (mut m, mut other) = (RunningMoments::default(), RunningMoments::default());
        a.iter().enumerate().for_each(|(i, x)| m.add(*x, i));
        b.iter().enumerate().for_each(|(i, x)| other.add(*x, i));
        m.merge(a.len(), &other, b.len());
        let want = variance_of(a.iter().chain(&b).copied()).unwrap();
        let got = m.variance(a.len() + b.len()).unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
        let mut empty = RunningMoments::default();
        empty.merge(0, &other, b.len());
        let (got, want) = (
            empty.variance(2).unwrap(),
            variance_of(b.iter().copied()).unwrap(),
        );
        assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
    }

    #[test]
    fn add_and_remove_returns_near_zero() {
        let mut s = RunningSum::default();
        let xs = [1e16, 1.0, -1e16, 3.25, 0.1, 0.2];
        for x in xs {
            s.add(x);
        }
        assert_eq!(s.value(), 1.0 + 3.25 + 0.1 + 0.2);
        for x in xs {
            s.add(-x);
        }
        assert!(s.value().abs() < 1e-15, "{}", s.value());
    }
}
