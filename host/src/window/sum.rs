//! A running sum that stays exact enough under many additions and removals.

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
