//! The ratio panel's vertical range, chosen so the medians read at a
//! glance. Every median and every line that must show (1.0x and the
//! upstream figures) is in range; intervals are shown whole when they
//! stay within a reach of those, one core spread on either side (at
//! least [`MIN_REACH`]). An interval that goes further (one noisy round
//! at one worker count can reach 8x) is clipped at the range's edge and
//! flagged, so the figure marks that it goes on instead of flattening
//! every other point into a band near 1.0x.

use std::ops::Range;

/// The least reach past the core, so medians that all sit together
/// still show their intervals.
const MIN_REACH: f64 = 0.1;

/// Room above and below the range for the markers drawn at its edges, as
/// a share of its height.
const PAD: f64 = 0.05;

/// The ratios the panel shows: from `lo` to `hi`, before padding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioAxis {
    pub lo: f64,
    pub hi: f64,
}

/// An interval as drawn: its ends within the axis, and which of them
/// were cut short there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shown {
    pub lo: f64,
    pub hi: f64,
    pub lo_clipped: bool,
    pub hi_clipped: bool,
}

impl RatioAxis {
    /// The range for `medians` with their `intervals` (`(lo, hi)`), keeping
    /// every one of `lines` (and 1.0) in view. The core is the medians and
    /// lines together; the range covers it, and every interval end within
    /// one core spread of it (at least [`MIN_REACH`], never below 0).
    pub fn choose(medians: &[f64], intervals: &[(f64, f64)], lines: &[f64]) -> RatioAxis {
        let core = medians.iter().chain(lines).copied();
        let core_lo = core.clone().fold(1.0, f64::min);
        let core_hi = core.fold(1.0, f64::max);
        let reach = (core_hi - core_lo).max(MIN_REACH);
        let (cap_lo, cap_hi) = ((core_lo - reach).max(0.0), core_hi + reach);
        let lo = intervals.iter().map(|i| i.0).fold(core_lo, f64::min);
        let hi = intervals.iter().map(|i| i.1).fold(core_hi, f64::max);
        RatioAxis {
            lo: lo.max(cap_lo),
            hi: hi.min(cap_hi),
        }
    }

    /// The range to build the chart on: the axis with room for markers.
    pub fn view(&self) -> Range<f64> {
        let pad = (self.hi - self.lo) * PAD;
        (self.lo - pad).max(0.0)..self.hi + pad
    }

    /// The interval `lo..hi` as drawn on this axis.
    pub fn show(&self, lo: f64, hi: f64) -> Shown {
        Shown {
            lo: lo.max(self.lo),
            hi: hi.min(self.hi),
            lo_clipped: lo < self.lo,
            hi_clipped: hi > self.hi,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: [f64; 2] = [1.15, 1.10];

    #[test]
    fn a_wide_interval_does_not_set_the_range() {
        // --smp 8 at 1..8 workers: one interval reaches 8x.
        let medians = [1.10, 1.09, 1.12, 1.06, 1.21, 1.25, 1.14];
        let intervals = [
            (0.95, 4.62),
            (0.93, 8.05),
            (0.98, 1.17),
            (1.08, 1.38),
            (1.10, 1.41),
            (0.90, 1.45),
        ];
        let axis = RatioAxis::choose(&medians, &intervals, &UPSTREAM);
        // Core 1.0..1.25: reach 0.25 on either side.
        assert_eq!(axis, RatioAxis { lo: 0.9, hi: 1.5 });
        let wide = axis.show(0.93, 8.05);
        assert!(wide.hi_clipped && !wide.lo_clipped, "{wide:?}");
        assert_eq!((wide.lo, wide.hi), (0.93, 1.5));
        let fits = axis.show(0.90, 1.45);
        assert!(!fits.lo_clipped && !fits.hi_clipped);
        assert_eq!((fits.lo, fits.hi), (0.90, 1.45), "shown whole");
    }

    #[test]
    fn intervals_that_fit_are_covered_whole() {
        let axis = RatioAxis::choose(&[0.99, 1.02], &[(0.93, 1.05), (0.97, 1.08)], &UPSTREAM);
        assert_eq!(axis, RatioAxis { lo: 0.93, hi: 1.15 });
        let whole = axis.show(0.93, 1.05);
        assert!(!whole.lo_clipped && !whole.hi_clipped);
        let view = axis.view();
        assert!(view.start < 0.93 && view.end > 1.15, "room for markers");
    }

    #[test]
    fn every_median_and_line_is_in_range_however_far() {
        let axis = RatioAxis::choose(&[0.2, 3.0], &[(0.1, 3.5)], &UPSTREAM);
        assert!(axis.lo <= 0.2 && axis.hi >= 3.0, "{axis:?}");
        let axis = RatioAxis::choose(&[0.95], &[], &UPSTREAM);
        assert!(axis.lo <= 0.95 && axis.hi >= 1.15, "{axis:?}");
    }

    #[test]
    fn clipping_below_stops_at_the_reach_and_never_below_zero() {
        // Core 1.0..1.15: reach 0.15, so an interval down to 0.3 is cut at 0.85.
        let axis = RatioAxis::choose(&[1.05], &[(0.3, 1.1)], &UPSTREAM);
        assert!((axis.lo - 0.85).abs() < 1e-9, "{axis:?}");
        let low = axis.show(0.3, 1.1);
        assert!(low.lo_clipped && !low.hi_clipped);
        let axis = RatioAxis::choose(&[0.1, 1.0], &[(0.0, 1.0)], &[]);
        assert!(axis.view().start >= 0.0);
    }

    #[test]
    fn medians_that_sit_together_still_get_some_reach() {
        let axis = RatioAxis::choose(&[1.0, 1.01], &[(0.5, 1.5)], &[]);
        assert!(
            (axis.lo - 0.9).abs() < 1e-9 && (axis.hi - 1.11).abs() < 1e-9,
            "{axis:?}"
        );
    }
}
