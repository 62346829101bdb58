//! Run-time fault injection for the pid subsystem's allocations.
//!
//! Linux has `lib/fault-inject.c` with the `failslab` and
//! `fail_page_alloc` attributes; this is a much smaller cousin with one
//! switch per allocation site the pid code has ([`FaultSite`]), so the
//! error paths behind those allocations can be made to run.
//!
//! Each site is armed ([`fault_inject`]) with a [`FaultMode`], either for
//! every CPU or for one CPU, and counts how often it fired, in all and per
//! CPU. The switches are global and change at run time, so a test, the
//! benchmark or a reliability soak can arm them around any code; the
//! allocation sites ask [`should_fail`].

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS};

/// The allocation sites that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultSite {
    /// `struct pid` allocation in `alloc_pid` (its `kmem_cache_alloc`;
    /// failing gives ENOMEM).
    PidAlloc,
    /// `idr_preload()` filling this CPU's node pool (the `GFP_KERNEL`
    /// allocation that may fail; a failed fill leaves the pool as it was).
    PreloadFill,
    /// The IDR allocating a node from the node cache under the lock (the
    /// `GFP_ATOMIC` slab allocation; the insertion then falls back to the
    /// preload pool).
    NodeAlloc,
    /// The IDR taking a node from the preload pool under the lock: the
    /// insertion finds the pool dry (with `NodeAlloc` also failing, the
    /// insertion fails: ENOMEM).
    PreloadTake,
    /// The task structure in `copy_process` (`dup_task_struct`, here
    /// `Task::create`; failing gives ENOMEM).
    TaskAlloc,
    /// The task's kernel stack (`Task::create`; failing gives ENOMEM).
    StackAlloc,
}

impl FaultSite {
    /// Every site.
    pub(crate) const ALL: [FaultSite; 6] = [
        FaultSite::PidAlloc,
        FaultSite::PreloadFill,
        FaultSite::NodeAlloc,
        FaultSite::PreloadTake,
        FaultSite::TaskAlloc,
        FaultSite::StackAlloc,
    ];

    /// A short name for reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultSite::PidAlloc => "pid",
            FaultSite::PreloadFill => "preload-fill",
            FaultSite::NodeAlloc => "idr-node",
            FaultSite::PreloadTake => "preload-take",
            FaultSite::TaskAlloc => "task",
            FaultSite::StackAlloc => "stack",
        }
    }

    fn state(self) -> &'static SiteState {
        &SITES[self as usize]
    }
}

/// How an armed site fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultMode {
    /// Never fail (disarm).
    Off,
    /// Fail the next `n` attempts, then disarm.
    #[cfg(test)]
    FailNext(u32),
    /// Fail every `k`-th attempt (`1` fails all of them) until disarmed.
    FailEvery(u32),
    /// Fail each attempt with probability 1/`one_in` (`1` fails all),
    /// drawn from a generator seeded with `seed` (same seed and same
    /// attempts, same failures) until disarmed.
    Random { one_in: u32, seed: u64 },
}

/// Slot index of the "any CPU" setting (after the per-CPU slots).
const ANY_CPU: usize = MAX_CPUS;

struct SlotState {
    /// Set by [`fault_inject`] while this slot has a mode other than `Off`.
    configured: AtomicBool,
    next_n: AtomicU32,
    every_k: AtomicU32,
    attempts: AtomicU32,
    /// `Random`: the odds (0: not random) and the generator's state.
    one_in: AtomicU32,
    rng: AtomicU64,
}

impl SlotState {
    const fn new() -> Self {
        SlotState {
            configured: AtomicBool::new(false),
            next_n: AtomicU32::new(0),
            every_k: AtomicU32::new(0),
            attempts: AtomicU32::new(0),
            one_in: AtomicU32::new(0),
            rng: AtomicU64::new(0),
        }
    }
}

/// One site: a setting per CPU plus one for every CPU, so parallel users
/// (host tests, each its own CPU) arm the same site independently.
struct SiteState {
    /// How many slots are configured: the fast path's only load.
    configured_slots: AtomicU32,
    fired: AtomicU64,
    /// Failures by the CPU that made the attempt.
    fired_on: [AtomicU64; MAX_CPUS],
    slots: [SlotState; MAX_CPUS + 1],
}

impl SiteState {
    const fn new() -> Self {
        SiteState {
            configured_slots: AtomicU32::new(0),
            fired: AtomicU64::new(0),
            fired_on: [const { AtomicU64::new(0) }; MAX_CPUS],
            slots: [const { SlotState::new() }; MAX_CPUS + 1],
        }
    }
}

static SITES: [SiteState; FaultSite::ALL.len()] =
    [const { SiteState::new() }; FaultSite::ALL.len()];

/// Arms (or, with [`FaultMode::Off`], disarms) `site`, for attempts on CPU
/// `c` only (`cpu = Some(c)`) or on every CPU (`None`). The per-CPU and the
/// every-CPU settings are independent; an attempt fails if either says so.
/// An out-of-range CPU is ignored.
///
/// Per-CPU settings exist for the host, where tests run in parallel threads
/// (each its own simulated CPU): a test arms a site for its own CPU only and
/// cannot disturb the others.
pub(crate) fn fault_inject(site: FaultSite, mode: FaultMode, cpu: Option<usize>) {
    let idx = cpu.unwrap_or(ANY_CPU);
    if idx > ANY_CPU {
        return;
    }
    let s = site.state();
    let slot = &s.slots[idx];
    let (n, k, one_in, seed) = match mode {
        FaultMode::Off => (0, 0, 0, 0),
        #[cfg(test)]
        FaultMode::FailNext(n) => (n, 0, 0, 0),
        FaultMode::FailEvery(k) => (0, k, 0, 0),
        FaultMode::Random { one_in, seed } => (0, 0, one_in, seed),
    };
    slot.next_n.store(n, Ordering::SeqCst);
    slot.every_k.store(k, Ordering::SeqCst);
    slot.attempts.store(0, Ordering::SeqCst);
    // xorshift needs a non-zero state.
    slot.rng.store(seed | 1 << 63, Ordering::SeqCst);
    slot.one_in.store(one_in, Ordering::SeqCst);
    let on = n > 0 || k > 0 || one_in > 0;
    if slot.configured.swap(on, Ordering::SeqCst) != on {
        if on {
            s.configured_slots.fetch_add(1, Ordering::SeqCst);
        } else {
            s.configured_slots.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How many times `site` has made an attempt on CPU `cpu` fail since boot.
pub(crate) fn fault_fired_on(site: FaultSite, cpu: usize) -> u64 {
    site.state().fired_on[cpu].load(Ordering::Relaxed)
}

/// Whether this attempt at `site` must fail. Called by the allocation
/// sites; when nothing is armed it costs one relaxed load of a read-mostly
/// word.
#[inline]
pub(crate) fn should_fail(site: FaultSite) -> bool {
    let s = site.state();
    if s.configured_slots.load(Ordering::Relaxed) == 0 {
        return false;
    }
    should_fail_slow(s)
}

#[cold]
fn should_fail_slow(s: &SiteState) -> bool {
    let cpu = platform::cpu_id();
    let fail = slot_fires(&s.slots[cpu]) | slot_fires(&s.slots[ANY_CPU]);
    if fail {
        s.fired.fetch_add(1, Ordering::Relaxed);
        s.fired_on[cpu].fetch_add(1, Ordering::Relaxed);
    }
    fail
}

fn slot_fires(slot: &SlotState) -> bool {
    if !slot.configured.load(Ordering::Acquire) {
        return false;
    }
    let mut n = slot.next_n.load(Ordering::Acquire);
    while n > 0 {
        match slot
            .next_n
            .compare_exchange_weak(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(now) => n = now,
        }
    }
    let one_in = slot.one_in.load(Ordering::Relaxed);
    if one_in > 0 {
        // xorshift64*: one slot is drawn from by its own CPU only (or, for
        // the every-CPU slot, racily by several, which only mixes it more).
        let mut x = slot.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        slot.rng.store(x, Ordering::Relaxed);
        return (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32).is_multiple_of(u64::from(one_in));
    }
    let k = slot.every_k.load(Ordering::Relaxed);
    k > 0 && (slot.attempts.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test arms sites for its own (simulated) CPU only, so parallel
    // tests never see each other's faults.
    fn here() -> Option<usize> {
        Some(platform::cpu_id())
    }

    #[test]
    fn fail_next_n_then_stops() {
        fault_inject(FaultSite::PidAlloc, FaultMode::FailNext(2), here());
        assert!(should_fail(FaultSite::PidAlloc));
        assert!(should_fail(FaultSite::PidAlloc));
        assert!(!should_fail(FaultSite::PidAlloc));
        fault_inject(FaultSite::PidAlloc, FaultMode::Off, here());
    }

    #[test]
    fn fail_every_kth() {
        fault_inject(FaultSite::NodeAlloc, FaultMode::FailEvery(3), here());
        let pattern: Vec<bool> = (0..6).map(|_| should_fail(FaultSite::NodeAlloc)).collect();
        fault_inject(FaultSite::NodeAlloc, FaultMode::Off, here());
        assert_eq!(pattern, [false, false, true, false, false, true]);
        assert!(!should_fail(FaultSite::NodeAlloc));
    }

    #[test]
    fn random_faults_follow_their_odds_and_their_seed() {
        let draw = |seed| {
            fault_inject(
                FaultSite::TaskAlloc,
                FaultMode::Random { one_in: 10, seed },
                here(),
            );
            let v: Vec<bool> = (0..10_000)
                .map(|_| should_fail(FaultSite::TaskAlloc))
                .collect();
            fault_inject(FaultSite::TaskAlloc, FaultMode::Off, here());
            v
        };
        let before = fault_fired_on(FaultSite::TaskAlloc, platform::cpu_id());
        let a = draw(7);
        let fired = a.iter().filter(|&&f| f).count();
        assert!((800..1200).contains(&fired), "{fired} of 10000 at 1/10");
        assert_eq!(
            fault_fired_on(FaultSite::TaskAlloc, platform::cpu_id()) - before,
            fired as u64
        );
        assert_eq!(a, draw(7), "same seed, same failures");
        assert_ne!(a, draw(8));
    }

    #[test]
    fn cpu_filter_spares_other_cpus() {
        let me = platform::cpu_id();
        fault_inject(FaultSite::PreloadFill, FaultMode::FailEvery(1), Some(me));
        let other = std::thread::spawn(|| should_fail(FaultSite::PreloadFill))
            .join()
            .unwrap();
        assert!(!other);
        assert!(should_fail(FaultSite::PreloadFill));
        fault_inject(FaultSite::PreloadFill, FaultMode::Off, here());
    }
}
