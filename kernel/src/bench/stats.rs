//! Sample statistics for benchmark reports, in integers.
//!
//! The kernel has no floating-point square root (no libm in `core`), and
//! benchmark numbers are counts anyway, so everything here is integer or
//! fixed-point: means and standard deviations of ops/s, and ratios in parts
//! per ten thousand (`10000` = 1.0000x).
//!
//! A ratio of two means comes with its spread, propagated from the standard
//! errors of both (first-order: relative errors add in quadrature). A
//! difference is called *inside the noise* when the ratio is within two
//! spreads of 1.0: on these shared 2-core machines that is the honest bar.

/// Fixed-point unit for ratios: 1.0000x.
pub const RATIO_ONE: u64 = 10_000;

/// Mean and spread of a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub n: u64,
    pub mean: u64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for n < 2).
    pub stdev: u64,
    pub min: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(samples: &[u64]) -> Summary {
        let n = samples.len() as u64;
        if n == 0 {
            return Summary::default();
        }
        let sum: u128 = samples.iter().map(|&x| x as u128).sum();
        let mean = (sum / n as u128) as u64;
        let stdev = if n < 2 {
            0
        } else {
            let mean_exact = sum as f64 / n as f64;
            let ss: f64 = samples
                .iter()
                .map(|&x| {
                    let d = x as f64 - mean_exact;
                    d * d
                })
                .sum();
            isqrt((ss / (n - 1) as f64) as u128)
        };
        Summary {
            n,
            mean,
            stdev,
            min: *samples.iter().min().expect("non-empty"),
            max: *samples.iter().max().expect("non-empty"),
        }
    }

    /// Standard error of the mean (stdev / sqrt(n)).
    pub fn stderr(&self) -> u64 {
        if self.n == 0 {
            return 0;
        }
        (self.stdev as u128 * 1000 / isqrt(self.n as u128 * 1_000_000) as u128) as u64
    }
}

fn isqrt(x: u128) -> u64 {
    x.isqrt() as u64
}

/// `a / b` with its spread, in units of [`RATIO_ONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub value: u64,
    pub spread: u64,
}

impl Ratio {
    /// The ratio of the means of `a` and `b`, and its spread from both
    /// standard errors. `None` when `b`'s mean is 0.
    pub fn of(a: &Summary, b: &Summary) -> Option<Ratio> {
        if b.mean == 0 {
            return None;
        }
        let value = (a.mean as u128 * RATIO_ONE as u128 / b.mean as u128) as u64;
        // Relative errors squared, in units of 1e-8 (RATIO_ONE^2).
        let rel_sq = |s: &Summary| -> u128 {
            if s.mean == 0 {
                return 0;
            }
            let r = s.stderr() as u128 * RATIO_ONE as u128 / s.mean as u128;
            r * r
        };
        let rel = isqrt(rel_sq(a) + rel_sq(b)) as u128;
        let spread = (value as u128 * rel / RATIO_ONE as u128) as u64;
        Some(Ratio { value, spread })
    }

    /// Whether 1.0 lies within two spreads of the ratio.
    pub fn inside_noise(&self) -> bool {
        self.value.abs_diff(RATIO_ONE) <= 2 * self.spread
    }
}

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}.{:03}x ±{}.{:03}",
            self.value / RATIO_ONE,
            self.value % RATIO_ONE / 10,
            self.spread / RATIO_ONE,
            self.spread % RATIO_ONE / 10
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let s = Summary::of(&[2, 4, 4, 4, 5, 5, 7, 9]);
        assert_eq!((s.n, s.mean, s.min, s.max), (8, 5, 2, 9));
        // Sample stdev of this set is sqrt(32/7) = 2.138...
        assert_eq!(s.stdev, 2);
        assert_eq!(Summary::of(&[]).n, 0);
        assert_eq!(Summary::of(&[10]).stdev, 0);
    }

    #[test]
    fn stdev_of_large_counts_is_exact_enough() {
        let s = Summary::of(&[1_000_000, 1_010_000, 990_000]);
        assert_eq!(s.mean, 1_000_000);
        assert_eq!(s.stdev, 10_000);
        // stderr = 10000 / sqrt(3) = 5773.5
        assert!((5772..=5774).contains(&s.stderr()), "{}", s.stderr());
    }

    #[test]
    fn the_spread_adds_both_relative_errors_in_quadrature() {
        // stdev 0: no error of its own.
        let exact = Summary::of(&[100_000; 4]);
        // mean 100000, stdev sqrt(4e8 / 3) = 11547, stderr 11547 / 2 =
        // 5773: a relative error of 0.0577.
        let noisy = Summary::of(&[90_000, 110_000, 90_000, 110_000]);
        assert_eq!(
            (noisy.mean, noisy.stdev, noisy.stderr()),
            (100_000, 11_547, 5_773)
        );
        // The baseline's error alone, then the measured side's alone: the
        // same spread, 0.0577 of the ratio.
        let r = Ratio::of(&exact, &noisy).unwrap();
        assert_eq!((r.value, r.spread), (10_000, 577));
        let r = Ratio::of(&noisy, &exact).unwrap();
        assert_eq!((r.value, r.spread), (10_000, 577));
        // Both: sqrt(2) times as much.
        let r = Ratio::of(&noisy, &noisy).unwrap();
        assert_eq!((r.value, r.spread), (10_000, 816));
        // The spread scales with the ratio: 2x with the baseline's 5.77%.
        let double = Summary::of(&[200_000; 4]);
        let r = Ratio::of(&double, &noisy).unwrap();
        assert_eq!((r.value, r.spread), (20_000, 1_154));
    }

    #[test]
    fn ratio_and_noise() {
        let base = Summary::of(&[100_000, 101_000, 99_000]);
        let faster = Summary::of(&[120_000, 121_000, 119_000]);
        let r = Ratio::of(&faster, &base).unwrap();
        assert_eq!(r.value, 12_000);
        assert!(!r.inside_noise());
        assert_eq!(r.to_string(), format!("1.200x ±0.{:03}", r.spread / 10));
        let noisy = Summary::of(&[80_000, 120_000, 100_000]);
        let r = Ratio::of(&noisy, &base).unwrap();
        assert!(r.inside_noise(), "{r}");
        assert!(Ratio::of(&base, &Summary::default()).is_none());
    }
}
