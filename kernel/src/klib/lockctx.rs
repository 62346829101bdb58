//! Where the side work of the pid and exit paths runs: for each call of
//! `free_pid`, `add_device_randomness`, `pidfs_add_pid`/`pidfs_remove_pid`,
//! IDR node allocation, `__exit_signal`'s accounting fold and
//! `copy_process`'s attach, whether this CPU held `tasklist_lock` for
//! writing, `pidmap_lock`, `siglock` and `stats_lock` for writing, and
//! whether interrupts were off; and the order of `free_pid` calls (each
//! pid's root-level number, in a small ring). That is what the two changes
//! move, so tests assert it per strategy: a strategy that drifts from its
//! kernel version fails them.
//!
//! Off by default; then each hook costs one relaxed load. Counters and
//! rings are per-CPU and written by their CPU only.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS};

/// A lock whose holding is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tracked {
    /// `write_lock_irq(&tasklist_lock)`.
    TasklistWrite = 1,
    /// `pidmap_lock`, any discipline.
    Pidmap = 2,
    /// `spin_lock(&sighand->siglock)`.
    Siglock = 4,
    /// `write_seqlock(&sig->stats_lock)`.
    StatsWrite = 8,
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
    /// `__exit_signal`'s fold of the dying task's accounting into its group.
    ExitSignal = 5,
    /// `copy_process` attaching the child's pids.
    ForkAttach = 6,
}

const SITES: usize = 7;
/// Held-lock masks (four tracked locks) times IRQs on/off.
const CONTEXTS: usize = 16 * 2;
/// `free_pid` calls remembered per CPU (the last ones).
const FREE_RING: usize = 8;

/// The context of one call: which tracked locks this CPU held, and whether
/// interrupts were off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Context {
    pub(crate) tasklist_write: bool,
    pub(crate) pidmap: bool,
    pub(crate) siglock: bool,
    pub(crate) stats_write: bool,
    pub(crate) irqs_off: bool,
}

impl Context {
    fn index(self) -> usize {
        usize::from(self.tasklist_write)
            | usize::from(self.pidmap) << 1
            | usize::from(self.siglock) << 2
            | usize::from(self.stats_write) << 3
            | usize::from(self.irqs_off) << 4
    }

    fn of_index(i: usize) -> Self {
        Context {
            tasklist_write: i & 1 != 0,
            pidmap: i & 2 != 0,
            siglock: i & 4 != 0,
            stats_write: i & 8 != 0,
            irqs_off: i & 16 != 0,
        }
    }
}

#[repr(align(128))]
struct CpuState {
    held: AtomicU8,
    counts: [[AtomicU64; CONTEXTS]; SITES],
    /// Root-level numbers of the pids `free_pid` was called for, the
    /// `freed`-th call at `freed % FREE_RING`.
    free_ring: [AtomicI32; FREE_RING],
    freed: AtomicU64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static CPUS: [CpuState; MAX_CPUS] = [const {
    CpuState {
        held: AtomicU8::new(0),
        counts: [const { [const { AtomicU64::new(0) }; CONTEXTS] }; SITES],
        free_ring: [const { AtomicI32::new(0) }; FREE_RING],
        freed: AtomicU64::new(0),
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
        siglock: held & Tracked::Siglock as u8 != 0,
        stats_write: held & Tracked::StatsWrite as u8 != 0,
        irqs_off,
    };
    let c = &cpu.counts[site as usize][ctx.index()];
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    platform::local_irq_restore(flags);
}

/// Records a `free_pid` call on this CPU: its context (as [`record`]
/// with [`Site::FreePid`]) and, in the ring, the pid's root-level number,
/// which `nr` gives only when recording is on (one relaxed load when off).
#[inline]
pub(crate) fn record_free(nr: impl FnOnce() -> i32) {
    if enabled() {
        record_slow(Site::FreePid);
        record_free_slow(nr());
    }
}

#[cold]
fn record_free_slow(nr: i32) {
    let flags = platform::local_irq_save();
    let cpu = &CPUS[platform::cpu_id()];
    let n = cpu.freed.load(Ordering::Relaxed);
    cpu.free_ring[n as usize % FREE_RING].store(nr, Ordering::Relaxed);
    cpu.freed.store(n + 1, Ordering::Relaxed);
    platform::local_irq_restore(flags);
}

/// The pids `cpu` called `free_pid` for since the last [`reset`], oldest
/// first: all of them, or the last [`FREE_RING`] if there were more.
pub(crate) fn frees(cpu: usize) -> alloc::vec::Vec<i32> {
    let c = &CPUS[cpu];
    let n = c.freed.load(Ordering::Relaxed);
    let first = n.saturating_sub(FREE_RING as u64);
    (first..n)
        .map(|i| c.free_ring[i as usize % FREE_RING].load(Ordering::Relaxed))
        .collect()
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

/// Zeroes the counters and empties the `free_pid` rings (no CPU may be
/// recording meanwhile).
pub(crate) fn reset() {
    for c in &CPUS {
        for site in &c.counts {
            for n in site {
                n.store(0, Ordering::Relaxed);
            }
        }
        c.freed.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes the tests that switch recording on and off, so one's
    /// restore cannot switch it off under the other.
    static ENABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn count_in(site: Site, ctx: Context) -> u64 {
        counts(site)
            .into_iter()
            .find(|(c, _)| *c == ctx)
            .map_or(0, |(_, n)| n)
    }

    #[test]
    fn contexts_are_recorded_per_site() {
        let _serial = ENABLE.lock().unwrap_or_else(|e| e.into_inner());
        // Other tests may record meanwhile: look only at this thread's CPU
        // through sites and contexts no other test produces.
        let was = set_enabled(true);
        let pidfs_ctx = Context {
            tasklist_write: true,
            pidmap: true,
            siglock: false,
            stats_write: false,
            irqs_off: true,
        };
        let exit_ctx = Context {
            pidmap: false,
            siglock: true,
            stats_write: true,
            ..pidfs_ctx
        };
        let (pidfs_before, exit_before) = (
            count_in(Site::PidfsAdd, pidfs_ctx),
            count_in(Site::ExitSignal, exit_ctx),
        );
        acquired(Tracked::TasklistWrite);
        acquired(Tracked::Pidmap);
        let flags = platform::local_irq_save();
        record(Site::PidfsAdd);
        releasing(Tracked::Pidmap);
        acquired(Tracked::Siglock);
        acquired(Tracked::StatsWrite);
        record(Site::ExitSignal);
        releasing(Tracked::StatsWrite);
        releasing(Tracked::Siglock);
        platform::local_irq_restore(flags);
        releasing(Tracked::TasklistWrite);
        let (pidfs_after, exit_after) = (
            count_in(Site::PidfsAdd, pidfs_ctx),
            count_in(Site::ExitSignal, exit_ctx),
        );
        set_enabled(was);
        assert!(pidfs_after > pidfs_before);
        assert!(exit_after > exit_before);
        assert_eq!(CPUS[platform::cpu_id()].held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn frees_are_kept_in_call_order_per_cpu() {
        let _serial = ENABLE.lock().unwrap_or_else(|e| e.into_inner());
        // Only this thread records on its CPU: the last entries are ours.
        let was = set_enabled(true);
        let nrs: std::vec::Vec<i32> = (0..FREE_RING as i32 + 3).map(|i| 1000 - i).collect();
        record_free(|| nrs[0]);
        record_free(|| nrs[1]);
        let two = frees(platform::cpu_id());
        for &nr in &nrs[2..] {
            record_free(|| nr);
        }
        let all = frees(platform::cpu_id());
        set_enabled(false);
        record_free(|| 1);
        let off = frees(platform::cpu_id());
        set_enabled(was);
        assert_eq!(&two[two.len() - 2..], &nrs[..2]);
        assert_eq!(all, &nrs[nrs.len() - FREE_RING..], "the last FREE_RING");
        assert_eq!(off, all, "nothing is recorded while off");
    }
}
