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
//!
//! When two strategies ran interleaved in rounds, [`Paired`] is the better
//! judge: each round's ratio cancels whatever the host did to both during
//! that round, and the median of the rounds' ratios with its
//! distribution-free (order-statistic) interval does not let one disturbed
//! round move the verdict.

/// Fixed-point unit for ratios: 1.0000x.
pub(crate) const RATIO_ONE: u64 = 10_000;

/// Mean and spread of a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) n: u64,
    pub(crate) mean: u64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for n < 2).
    pub(crate) stdev: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

impl Summary {
    pub(crate) fn of(samples: &[u64]) -> Summary {
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
    pub(crate) fn stderr(&self) -> u64 {
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
pub(crate) struct Ratio {
    pub(crate) value: u64,
    pub(crate) spread: u64,
}

impl Ratio {
    /// The ratio of the means of `a` and `b`, and its spread from both
    /// standard errors. `None` when `b`'s mean is 0.
    pub(crate) fn of(a: &Summary, b: &Summary) -> Option<Ratio> {
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
    #[cfg(test)]
    pub(crate) fn inside_noise(&self) -> bool {
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

/// Confidence a paired interval must reach before `noise?` is decided.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
pub(crate) const CONFIDENCE_X10000: u64 = 9_500;

/// The median of per-round ratios with an order-statistic interval, in
/// units of [`RATIO_ONE`].
///
/// For `n` sorted ratios, `[x(k), x(n+1-k)]` covers the true median with
/// probability `1 - 2 P(Binomial(n, 1/2) < k)`, whatever the distribution;
/// `k` is the largest rank that keeps that at 95% or more. Below 6 rounds
/// no `k` does, and the interval is the range of the ratios, with the
/// coverage it has (93.8% for 5 rounds).
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Paired {
    pub(crate) n: u64,
    pub(crate) median: u64,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    /// Probability that `[lo, hi]` covers the median, in parts per 10,000.
    pub(crate) coverage: u64,
}

/// How a paired interval sits against 1.0.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Noise {
    /// 1.0 lies inside the interval: no difference shown.
    Inside,
    /// The interval excludes 1.0.
    Outside,
    /// Too few rounds for a 95% interval.
    Few,
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl Noise {
    /// The word the reports print.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Noise::Inside => "inside",
            Noise::Outside => "outside",
            Noise::Few => "few",
        }
    }
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl Paired {
    /// Per round `i`, `a[i] / b[i]` (rounds where `b` measured nothing are
    /// left out), then their median and interval. `None` without a round.
    pub(crate) fn of(a: &[u64], b: &[u64]) -> Option<Paired> {
        let mut r: alloc::vec::Vec<u64> = a
            .iter()
            .zip(b)
            .filter(|&(_, &b)| b > 0)
            .map(|(&a, &b)| (a as u128 * RATIO_ONE as u128 / b as u128) as u64)
            .collect();
        Self::of_ratios(&mut r)
    }

    /// The median and interval of `ratios` (sorted in place).
    pub(crate) fn of_ratios(ratios: &mut [u64]) -> Option<Paired> {
        let n = ratios.len();
        if n == 0 {
            return None;
        }
        ratios.sort_unstable();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2
        };
        let (k, coverage) = median_interval_rank(n as u64);
        Some(Paired {
            n: n as u64,
            median,
            lo: ratios[k as usize - 1],
            hi: ratios[n - k as usize],
            coverage,
        })
    }

    /// Whether the interval includes 1.0, and whether it may say so.
    pub(crate) fn noise(&self) -> Noise {
        if self.coverage < CONFIDENCE_X10000 {
            Noise::Few
        } else if self.lo <= RATIO_ONE && RATIO_ONE <= self.hi {
            Noise::Inside
        } else {
            Noise::Outside
        }
    }

    /// The farther bound's distance from the median.
    pub(crate) fn spread(&self) -> u64 {
        (self.median - self.lo).max(self.hi - self.median)
    }
}

/// The largest rank `k` (1-based, at least 1) whose interval
/// `[x(k), x(n+1-k)]` covers a median with probability at least
/// [`CONFIDENCE_X10000`], and that probability in parts per 10,000.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
pub(crate) fn median_interval_rank(n: u64) -> (u64, u64) {
    // P(Binomial(n, 1/2) <= j), accumulated term by term; 0.5^n stays a
    // normal f64 for every n the command line allows (<= 1000).
    let mut pmf = (0..n).fold(1.0f64, |p, _| p * 0.5);
    let mut cdf = 0.0;
    // Rank 1 (the range) and its tail P(X <= 0) when nothing better fits.
    let (mut k, mut tail) = (1, pmf);
    for j in 0..n {
        cdf += pmf; // P(X <= j): the tail of rank j + 1
        if 2.0 * cdf > 1.0 - CONFIDENCE_X10000 as f64 / RATIO_ONE as f64 {
            break;
        }
        (k, tail) = (j + 1, cdf);
        pmf = pmf * (n - j) as f64 / (j + 1) as f64;
    }
    let coverage = ((1.0 - 2.0 * tail) * RATIO_ONE as f64) as u64;
    (k, coverage)
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl core::fmt::Display for Paired {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}x [{}, {}]",
            Fixed3(self.median),
            Fixed3(self.lo),
            Fixed3(self.hi)
        )
    }
}

/// A ratio in units of [`RATIO_ONE`], printed with three decimals.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
pub(crate) struct Fixed3(pub(crate) u64);

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl core::fmt::Display for Fixed3 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / RATIO_ONE, self.0 % RATIO_ONE / 10)
    }
}

/// Pearson's correlation of `x` and `y`, in hundredths (none for fewer
/// than three pairs or a constant side).
pub(crate) fn correlation_x100(x: &[u64], y: &[u64]) -> Option<i64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mean = |v: &[u64]| v[..n].iter().map(|&a| i128::from(a)).sum::<i128>() / n as i128;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0i128, 0i128, 0i128);
    for (&a, &b) in x[..n].iter().zip(&y[..n]) {
        let (dx, dy) = (i128::from(a) - mx, i128::from(b) - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let root = (sxx as u128).checked_mul(syy as u128)?.isqrt();
    (root > 0).then(|| (sxy * 100 / root as i128) as i64)
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

    #[test]
    fn median_interval_ranks_match_the_binomial_tables() {
        // Below 6 rounds only the range is available, below 95%.
        assert_eq!(median_interval_rank(1), (1, 0));
        assert_eq!(median_interval_rank(5), (1, 9375));
        // n = 6..=8: the range, 96.9% / 98.4% / 99.2%.
        assert_eq!(median_interval_rank(6), (1, 9687));
        assert_eq!(median_interval_rank(8), (1, 9921));
        // n = 9: ranks 2 and 8 (P(X <= 1) = 10/512), 96.1%.
        assert_eq!(median_interval_rank(9), (2, 9609));
        // n = 20: ranks 6 and 15 (P(X <= 5) = 0.0207), 95.9%.
        assert_eq!(median_interval_rank(20), (6, 9586));
        // The largest sample count the command line takes.
        let (k, c) = median_interval_rank(1000);
        assert!((469..=470).contains(&k) && c >= 9500, "{k} {c}");
    }

    #[test]
    fn paired_median_interval_and_noise() {
        let stock = [100, 200, 100, 400, 100, 100];
        let both = [110, 230, 108, 450, 112, 104];
        let p = Paired::of(&both, &stock).unwrap();
        // Ratios 1.10 1.15 1.08 1.125 1.12 1.04, sorted
        // 1.04 1.08 1.10 1.12 1.125 1.15.
        assert_eq!((p.n, p.lo, p.hi, p.median), (6, 10_400, 11_500, 11_100));
        assert_eq!(p.noise(), Noise::Outside);
        assert_eq!(p.spread(), 700);
        assert_eq!(p.to_string(), "1.110x [1.040, 1.150]");
        // The rounds' host phases (100 vs 400) cancel in the pairs; the
        // ratio of means would be carried by the big round.
        let mixed = Paired::of(&[105, 95, 103, 98, 101, 99], &[100; 6]).unwrap();
        assert_eq!(mixed.noise(), Noise::Inside);
        let few = Paired::of(&[120, 130], &[100, 100]).unwrap();
        assert_eq!(few.noise(), Noise::Few);
        assert!(few.lo <= few.median && few.median <= few.hi);
        // A round where the baseline measured nothing is left out.
        assert_eq!(Paired::of(&[5], &[0]), None);
    }

    #[test]
    fn correlation_reads_hundredths_with_its_sign() {
        let x = [100, 200, 300, 400];
        assert_eq!(correlation_x100(&x, &[10, 20, 30, 40]), Some(100));
        assert_eq!(correlation_x100(&x, &[40, 30, 20, 10]), Some(-100));
        // ops/s in the hundreds of thousands against line times in ns.
        let r = correlation_x100(
            &[150, 400, 160, 380, 500],
            &[150_000, 100_000, 140_000, 110_000, 95_000],
        );
        assert!(r.is_some_and(|r| r < -90), "{r:?}");
        let r = correlation_x100(&[1, 2, 3, 4, 5, 6], &[5, 1, 4, 2, 6, 3]).unwrap();
        assert!(r.abs() < 50, "{r}");
        // Too few pairs, or a side that never moves: nothing to say.
        assert_eq!(correlation_x100(&[1, 2], &[3, 4]), None);
        assert_eq!(correlation_x100(&[5, 5, 5], &[1, 2, 3]), None);
    }
}
