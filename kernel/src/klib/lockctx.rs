//! Where the side work of the pid and exit paths runs: for each call of
//! `free_pid`, `add_device_randomness`, `pidfs_add_pid`/`pidfs_remove_pid`
//! and IDR node allocation, whether this CPU held `tasklist_lock` for
//! writing and `pidmap_lock`, and whether interrupts were off. That is what
//! the two changes move, so tests assert it per strategy: a strategy that
//! drifts from its kernel version fails them.
//!
//! Off by default; then each hook costs one relaxed load. Counters are
//! per-CPU and written by their CPU only.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS};

/// A lock whose holding is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tracked {
    /// `write_lock_irq(&tasklist_lock)`.
    TasklistWrite = 1,
    /// `pidmap_lock`, any discipline.
    Pidmap = 2,
}

/// A call site whose context is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Site {
    FreePid = 0,
    AddDeviceRandomness = 1,
    PidfsAdd = 2,
    PidfsRemove = 3,
    IdrNodeAlloc = 4,
}

const SITES: usize = 5;
/// Held-lock masks (two tracked locks) times IRQs on/off.
const CONTEXTS: usize = 4 * 2;

/// The context of one call: which tracked locks this CPU held, and whether
/// interrupts were off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Context {
    pub(crate) tasklist_write: bool,
    pub(crate) pidmap: bool,
    pub(crate) irqs_off: bool,
}

impl Context {
    fn index(self) -> usize {
        usize::from(self.tasklist_write)
            | usize::from(self.pidmap) << 1
            | usize::from(self.irqs_off) << 2
    }

    fn of_index(i: usize) -> Self {
        Context {
            tasklist_write: i & 1 != 0,
            pidmap: i & 2 != 0,
            irqs_off: i & 4 != 0,
        }
    }
}

#[repr(align(128))]
struct CpuState {
    held: AtomicU8,
    counts: [[AtomicU64; CONTEXTS]; SITES],
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static CPUS: [CpuState; MAX_CPUS] = [const {
    CpuState {
        held: AtomicU8::new(0),
        counts: [const { [const { AtomicU64::new(0) }; CONTEXTS] }; SITES],
    }
}; MAX_CPUS];

/// Turns recording on or off; returns the previous setting.
pub(crate) fn set_enabled(on: bool) -> bool {
    ENABLED.swap(on, Ordering::SeqCst)
}

#[inline(always)]
fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// This CPU now holds `lock` (call just after taking it).
#[inline]
pub(crate) fn acquired(lock: Tracked) {
    if enabled() {
        let h = &CPUS[platform::cpu_id()].held;
        h.store(h.load(Ordering::Relaxed) | lock as u8, Ordering::Relaxed);
    }
}

/// This CPU is about to release `lock`. Unconditional (one load and, if
/// the bit is set, one store), so switching recording off while a lock is
/// held cannot leave its bit behind.
#[inline]
pub(crate) fn releasing(lock: Tracked) {
    let h = &CPUS[platform::cpu_id()].held;
    let v = h.load(Ordering::Relaxed);
    if v & lock as u8 != 0 {
        h.store(v & !(lock as u8), Ordering::Relaxed);
    }
}

/// Records the context of a call of `site` on this CPU.
#[inline]
pub(crate) fn record(site: Site) {
    if enabled() {
        record_slow(site);
    }
}

#[cold]
fn record_slow(site: Site) {
    let flags = platform::local_irq_save();
    let irqs_off = !flags.were_enabled();
    let cpu = &CPUS[platform::cpu_id()];
    let held = cpu.held.load(Ordering::Relaxed);
    let ctx = Context {
        tasklist_write: held & Tracked::TasklistWrite as u8 != 0,
        pidmap: held & Tracked::Pidmap as u8 != 0,
        irqs_off,
    };
    let c = &cpu.counts[site as usize][ctx.index()];
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    platform::local_irq_restore(flags);
}

/// Calls of `site` per context since the last [`reset`], summed over CPUs.
pub(crate) fn counts(site: Site) -> alloc::vec::Vec<(Context, u64)> {
    (0..CONTEXTS)
        .filter_map(|i| {
            let n: u64 = CPUS
                .iter()
                .map(|c| c.counts[site as usize][i].load(Ordering::Relaxed))
                .sum();
            (n > 0).then(|| (Context::of_index(i), n))
        })
        .collect()
}

/// Zeroes the counters (no CPU may be recording meanwhile).
pub(crate) fn reset() {
    for c in &CPUS {
        for site in &c.counts {
            for n in site {
                n.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_recorded_per_site() {
        // Other tests may record meanwhile: look only at this thread's CPU
        // through a site and context no other test produces.
        let was = set_enabled(true);
        acquired(Tracked::TasklistWrite);
        acquired(Tracked::Pidmap);
        let flags = platform::local_irq_save();
        let before = counts(Site::PidfsAdd)
            .into_iter()
            .find(|(c, _)| c.tasklist_write && c.pidmap && c.irqs_off)
            .map_or(0, |(_, n)| n);
        record(Site::PidfsAdd);
        platform::local_irq_restore(flags);
        releasing(Tracked::Pidmap);
        releasing(Tracked::TasklistWrite);
        let after = counts(Site::PidfsAdd)
            .into_iter()
            .find(|(c, _)| c.tasklist_write && c.pidmap && c.irqs_off)
            .map_or(0, |(_, n)| n);
        set_enabled(was);
        assert!(after > before);
        assert_eq!(CPUS[platform::cpu_id()].held.load(Ordering::Relaxed), 0);
    }
}
