//! Host steal, as a worker sees it: time its vCPU did not run.
//!
//! Under TCG the TSC follows the host's clock, so time the host spends
//! running something else passes on the TSC while the guest executes
//! nothing. A worker stamps the TSC once per op anyway; an op normally takes
//! microseconds, a host time slice milliseconds, so a gap between two
//! stamps longer than [`STEAL_GAP_US`] is counted, whole, as stolen. That
//! overcounts by the op's own work (well under the threshold) and counts a
//! wait on a lock whose holder's vCPU was descheduled as well: both are the
//! host's doing. It undercounts slices shorter than the threshold.
//!
//! The alternatives were worse here: TCG offers no paravirtual steal clock,
//! and timer-tick gaps would also count IRQ-off lock spins (which the
//! per-op stamps see the same way) while resolving only whole ticks.

#![cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark

/// Gaps between a worker's TSC stamps longer than this count as stolen.
pub(crate) const STEAL_GAP_US: u64 = 200;

/// One worker's stolen time during a sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StealMeter {
    threshold: u64,
    last: u64,
    stolen: u64,
}

impl StealMeter {
    /// Starting at TSC `start`, counting gaps over `threshold` cycles.
    pub(crate) fn new(start: u64, threshold: u64) -> Self {
        StealMeter {
            threshold,
            last: start,
            stolen: 0,
        }
    }

    /// The loop's stamp `now` (never earlier than the last one).
    #[inline]
    pub(crate) fn stamp(&mut self, now: u64) {
        let gap = now.saturating_sub(self.last);
        if gap > self.threshold {
            self.stolen += gap;
        }
        self.last = now;
    }

    /// Cycles counted as stolen so far.
    pub(crate) fn stolen(&self) -> u64 {
        self.stolen
    }
}

/// `stolen / elapsed` in hundredths of a percent (0..=10000).
pub(crate) fn steal_x100(stolen: u64, elapsed: u64) -> u64 {
    if elapsed == 0 {
        return 0;
    }
    (stolen.min(elapsed) as u128 * 10_000 / elapsed as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gaps_over_the_threshold_count() {
        let mut m = StealMeter::new(1000, 100);
        for now in [1050, 1100, 1150] {
            m.stamp(now);
        }
        assert_eq!(m.stolen(), 0);
        m.stamp(1400); // a 250-cycle gap
        m.stamp(1500); // exactly the threshold: not counted
        m.stamp(1450); // a stamp from the past counts nothing
        assert_eq!(m.stolen(), 250);
        assert_eq!(steal_x100(m.stolen(), 500), 5000);
        assert_eq!(steal_x100(0, 0), 0);
        assert_eq!(steal_x100(7, 5), 10_000);
    }
}
