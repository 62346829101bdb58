//! Lock debug checks: a bound on every wait, recursion, IRQ discipline.
//!
//! - **Always on, slow path only.** Every spin-wait runs under a
//!   [`Watchdog`]: a wait longer than the bound (`lockwait_ms=`, default
//!   2 s, by `platform::cycles()` once calibrated, else by a spin count)
//!   panics naming the lock and its holder, so a deadlock fails clearly
//!   instead of hanging. It starts only once a lock is found taken. The
//!   kernel's other spin loops (heap and console locks, RCU's waits) run
//!   under the same watchdog, some with a bound of their own
//!   ([`Watchdog::start_bounded`]); a waiting CPU records what it waits for,
//!   which the hard-lockup report prints ([`waiting_for`]).
//! - **[`LOCKDEBUG`]** (the `lockdebug` feature, and every unit test
//!   build): checks that cost the fast path. The holder's CPU is recorded at
//!   lock and cleared at unlock, so the slow path can panic on recursion
//!   and the watchdog can name the owner; the IRQ checks of
//!   [`super::irq`] are compiled in. Compile-time, so a benchmark build pays
//!   for none of it, not even the load of a switch.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence};

use crate::platform;

/// Whether the fast-path debug checks are compiled in.
pub(crate) const LOCKDEBUG: bool = cfg!(any(test, feature = "lockdebug"));

/// Default wait bound in milliseconds.
pub(crate) const DEFAULT_WAIT_BOUND_MS: u64 = 2000;

/// The wait bound when no cycle frequency is known: spins per millisecond
/// (about 20 ns per `pause` round; generous on real CPUs, where `pause` is
/// 10-140 cycles).
const SPINS_PER_MS: u64 = 50_000;

/// Rounds of spinning between two clock reads.
const CHECK_EVERY: u32 = 1024;

static WAIT_BOUND_MS: AtomicU64 = AtomicU64::new(DEFAULT_WAIT_BOUND_MS);

/// The current wait bound in milliseconds.
pub(crate) fn wait_bound_ms() -> u64 {
    WAIT_BOUND_MS.load(Ordering::Relaxed)
}

/// Sets the bound on any lock wait, in milliseconds (0 disables the
/// watchdog); returns the previous bound.
pub(crate) fn set_wait_bound_ms(ms: u64) -> u64 {
    WAIT_BOUND_MS.swap(ms, Ordering::Relaxed)
}

/// The bound for lock `name`: the global one, or a test's override.
fn bound_for(name: &str) -> u64 {
    #[cfg(all(test, not(loom)))]
    if let Some(ms) = test_bound(name) {
        return ms;
    }
    let _ = name;
    wait_bound_ms()
}

/// Who holds a lock, as far as the waiter can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A writer or mutex holder on this CPU.
    Cpu(usize),
    /// Readers (a reader-writer lock), this many.
    Readers(u32),
    /// Not recorded (`lockdebug` off), or released since.
    Unknown,
    /// Not a lock: what the wait depends on, in words.
    Text(&'static str),
}

impl core::fmt::Display for Holder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Holder::Cpu(cpu) => write!(f, "held by cpu {cpu}"),
            Holder::Readers(n) => write!(f, "held by {n} reader(s)"),
            Holder::Unknown if LOCKDEBUG => f.write_str("holder unknown"),
            Holder::Unknown => {
                f.write_str("holder unknown (build with feature lockdebug to record it)")
            }
            Holder::Text(text) => f.write_str(text),
        }
    }
}

/// Spinlocks (exclusive holds: mutexes and rwlock writers) each CPU holds,
/// counted by [`HolderCpu`] when [`LOCKDEBUG`] is on. Only its own CPU
/// writes a slot.
#[repr(align(64))]
struct HeldCount(AtomicU32);

static HELD: [HeldCount; platform::MAX_CPUS] =
    [const { HeldCount(AtomicU32::new(0)) }; platform::MAX_CPUS];

/// Spinlocks this CPU holds (0 unless [`LOCKDEBUG`]).
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // schedule(), bare metal
pub(crate) fn spinlocks_held() -> u32 {
    HELD[platform::cpu_id()].0.load(Ordering::Relaxed)
}

/// Panics (with [`LOCKDEBUG`]) if this CPU holds a spinlock: `schedule()`
/// calls it, since a task that switches away holding one leaves every
/// other CPU that wants it spinning until the task runs again.
#[inline(always)]
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // schedule(), bare metal
pub(crate) fn assert_no_spinlocks_held(what: &str) {
    if LOCKDEBUG {
        let n = spinlocks_held();
        if n != 0 {
            spinlocks_held_at(what, n);
        }
    }
}

#[cold]
#[inline(never)]
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // schedule(), bare metal
fn spinlocks_held_at(what: &str, n: u32) -> ! {
    panic!(
        "{what} with {n} spinlock(s) held on cpu {}",
        platform::cpu_id()
    );
}

/// The CPU holding a lock, plus one (0: none recorded). Written only when
/// [`LOCKDEBUG`] is on, which also counts the holds per CPU.
pub(crate) struct HolderCpu(AtomicU32);

impl HolderCpu {
    pub(crate) const fn new() -> Self {
        HolderCpu(AtomicU32::new(0))
    }

    /// Records this CPU as the holder (just after acquiring).
    #[inline(always)]
    pub(crate) fn set(&self) {
        if LOCKDEBUG {
            let cpu = platform::cpu_id();
            self.0.store(cpu as u32 + 1, Ordering::Relaxed);
            let held = &HELD[cpu].0;
            held.store(held.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Forgets the holder (just before releasing).
    #[inline(always)]
    pub(crate) fn clear(&self) {
        if LOCKDEBUG {
            self.0.store(0, Ordering::Relaxed);
            let held = &HELD[platform::cpu_id()].0;
            held.store(held.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> Holder {
        match self.0.load(Ordering::Relaxed) {
            0 => Holder::Unknown,
            n => Holder::Cpu(n as usize - 1),
        }
    }

    /// Panics if this CPU holds the lock: called on the slow path, where it
    /// is about to wait for itself. No false positives: only this CPU
    /// writes its own index, and it clears it before releasing, so a value
    /// naming this CPU is this CPU's own, still-current record.
    pub(crate) fn check_recursion(&self, name: &str) {
        if LOCKDEBUG {
            let me = platform::cpu_id();
            if self.get() == Holder::Cpu(me) {
                panic!("lock {name}: recursive locking: cpu {me} already holds it");
            }
        }
    }
}

/// Reports an IRQ-safe lock held with IRQs enabled (an interrupt handler
/// taking it on this CPU would deadlock); see [`super::irq`].
#[cold]
#[inline(never)]
pub(crate) fn irqs_on_while_held(name: &str) -> ! {
    panic!("lock {name}: IRQ-safe lock held with IRQs enabled");
}

/// Reports an `_irq` lock taken with IRQs already off (its unlock would
/// enable them behind the caller's back). If this CPU already holds the
/// lock (IRQs are off because it does), that is the better diagnosis, so
/// `check_recursion` runs first.
#[cold]
#[inline(never)]
pub(crate) fn irqs_off_at_irq_lock(name: &str, check_recursion: impl FnOnce()) -> ! {
    check_recursion();
    panic!("lock {name}: _irq lock taken with IRQs already off (its unlock would enable them)");
}

/// A `&'static str` in two words, written by one CPU: length cleared
/// first and stored last, so that a reader on the same CPU (an NMI) never
/// pairs one string's address with another's length.
struct StaticStr {
    ptr: AtomicUsize,
    len: AtomicUsize,
}

impl StaticStr {
    const fn new() -> Self {
        StaticStr {
            ptr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    fn clear(&self) {
        self.len.store(0, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    }

    /// After [`clear`](Self::clear).
    fn fill(&self, s: &'static str) {
        self.ptr.store(s.as_ptr() as usize, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        self.len.store(s.len(), Ordering::Relaxed);
    }

    fn get(&self) -> Option<&'static str> {
        let len = self.len.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let ptr = self.ptr.load(Ordering::Relaxed);
        if len == 0 || ptr == 0 {
            return None;
        }
        // SAFETY: `ptr` and a non-zero `len` were stored together from a
        // `&'static str` by `fill` (length cleared first, stored last).
        let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
        core::str::from_utf8(bytes).ok()
    }
}

/// What each CPU is spinning for, as its [`Watchdog`] last recorded it:
/// the kind of wait ("lock", ...) and the name; written only by that CPU,
/// the name's length last.
#[repr(align(64))]
struct WaitingFor {
    kind: StaticStr,
    name: StaticStr,
}

static WAITING: [WaitingFor; platform::MAX_CPUS] = [const {
    WaitingFor {
        kind: StaticStr::new(),
        name: StaticStr::new(),
    }
}; platform::MAX_CPUS];

impl WaitingFor {
    fn set(&self, kind: &'static str, name: &'static str) {
        self.name.clear();
        self.kind.clear();
        self.kind.fill(kind);
        self.name.fill(name);
    }
}

/// What CPU `cpu` is spinning for, as (kind, name), e.g. ("lock",
/// "tasklist_lock"), if its watchdog has checked in since the wait began.
/// Exact when read on that CPU (the hard-lockup NMI); a hint from any
/// other.
pub(crate) fn waiting_for(cpu: usize) -> Option<(&'static str, &'static str)> {
    let w = &WAITING[cpu];
    let name = w.name.get()?;
    Some((w.kind.get().unwrap_or("wait"), name))
}

/// Bounds one spin-wait; see the module doc.
pub(crate) struct Watchdog {
    start: u64,
    spins: u64,
    until_check: u32,
    /// The bound in ms, or `None` for the lock wait bound.
    bound_ms: Option<u64>,
    /// What the panic calls the wait: "lock" for locks.
    kind: &'static str,
    /// Whether this wait recorded itself in `WAITING` (and which value to
    /// put back when it ends).
    recorded: Option<Option<(&'static str, &'static str)>>,
}

impl Watchdog {
    /// Starts timing a lock wait (slow path only: reads the clock).
    pub(crate) fn start() -> Self {
        Watchdog {
            start: platform::cycles(),
            spins: 0,
            until_check: CHECK_EVERY,
            bound_ms: None,
            kind: "lock",
            recorded: None,
        }
    }

    /// Starts timing a wait that is not for a lock, bounded by `bound_ms`
    /// (0: unbounded, but still recorded for the hard-lockup report).
    pub(crate) fn start_bounded(kind: &'static str, bound_ms: u64) -> Self {
        Watchdog {
            bound_ms: Some(bound_ms),
            kind,
            ..Self::start()
        }
    }

    /// Cycles since [`start`](Self::start).
    pub(crate) fn elapsed(&self) -> u64 {
        platform::cycles().saturating_sub(self.start)
    }

    /// Called once per spin round; panics past the bound, naming `name` and
    /// whoever `holder` says holds it.
    #[inline(always)]
    pub(crate) fn tick(&mut self, name: &'static str, holder: impl FnOnce() -> Holder) {
        self.until_check -= 1;
        if self.until_check == 0 {
            self.check(name, holder);
        }
    }

    #[cold]
    fn check(&mut self, name: &'static str, holder: impl FnOnce() -> Holder) {
        self.spins += u64::from(CHECK_EVERY);
        self.check_now(name, holder);
    }

    /// Checks the bound at once (after a halt, when rounds say nothing
    /// about time); panics past it like [`tick`](Self::tick).
    #[cold]
    pub(crate) fn check_now(&mut self, name: &'static str, holder: impl FnOnce() -> Holder) {
        self.until_check = CHECK_EVERY;
        if self.recorded.is_none() {
            let cpu = platform::cpu_id();
            self.recorded = Some(waiting_for(cpu));
            WAITING[cpu].set(self.kind, name);
        }
        let bound_ms = self.bound_ms.unwrap_or_else(|| bound_for(name));
        if expired(
            bound_ms,
            platform::cycles_per_sec(),
            self.elapsed(),
            self.spins,
        ) {
            panic!(
                "{} {name}: cpu {} waited more than {bound_ms} ms; {}",
                self.kind,
                platform::cpu_id(),
                holder()
            );
        }
    }
}

impl Drop for Watchdog {
    /// Puts back what this CPU waited for before (a wait this one
    /// interrupted), or nothing.
    fn drop(&mut self) {
        if let Some(previous) = self.recorded {
            let w = &WAITING[platform::cpu_id()];
            match previous {
                Some((kind, name)) => w.set(kind, name),
                None => w.name.clear(),
            }
        }
    }
}

/// The console lock's wait check (arch's `console_wait` hook): a wait of
/// `waited` cycles past the lock wait bound panics as a lock wait does,
/// naming the console lock and its holder. Unbounded before the clock is
/// calibrated (only the boot CPU runs then).
#[cfg(target_os = "none")]
pub(crate) fn console_wait(waited: u64, holder_cpu: Option<usize>) {
    let bound_ms = wait_bound_ms();
    let cps = platform::cycles_per_sec();
    if cps != 0 && expired(bound_ms, cps, waited, 0) {
        panic!(
            "lock console_lock: cpu {} waited more than {bound_ms} ms; {}",
            platform::cpu_id(),
            holder_cpu.map_or(Holder::Unknown, Holder::Cpu)
        );
    }
}

/// Whether a wait of `elapsed` cycles and `spins` rounds is past `bound_ms`
/// (0: never), by the clock if it is calibrated (`cps != 0`), else by the
/// spin count.
fn expired(bound_ms: u64, cps: u64, elapsed: u64, spins: u64) -> bool {
    if bound_ms == 0 {
        false
    } else if cps != 0 {
        elapsed > bound_ms.saturating_mul(cps / 1000)
    } else {
        spins > bound_ms.saturating_mul(SPINS_PER_MS)
    }
}

/// Per-lock wait bounds set by tests; a global bound would reach every
/// other test running meanwhile.
#[cfg(all(test, not(loom)))]
static TEST_BOUNDS: std::sync::Mutex<std::vec::Vec<(&'static str, u64)>> =
    std::sync::Mutex::new(std::vec::Vec::new());

#[cfg(all(test, not(loom)))]
fn test_bound(name: &str) -> Option<u64> {
    let bounds = TEST_BOUNDS.lock().unwrap_or_else(|e| e.into_inner());
    bounds.iter().find(|(n, _)| *n == name).map(|&(_, ms)| ms)
}

/// Test helper: bounds waits on the locks called `name` for the life of
/// the value (also when a `should_panic` test unwinds).
#[cfg(all(test, not(loom)))]
pub(crate) struct WaitBoundOverride(&'static str);

#[cfg(all(test, not(loom)))]
impl WaitBoundOverride {
    pub(crate) fn new(name: &'static str, ms: u64) -> Self {
        let mut bounds = TEST_BOUNDS.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            bounds.iter().all(|(n, _)| *n != name),
            "{name} bounded twice"
        );
        bounds.push((name, ms));
        WaitBoundOverride(name)
    }
}

#[cfg(all(test, not(loom)))]
impl Drop for WaitBoundOverride {
    fn drop(&mut self) {
        let mut bounds = TEST_BOUNDS.lock().unwrap_or_else(|e| e.into_inner());
        bounds.retain(|(n, _)| *n != self.0);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn watchdog_bound_uses_cycles_or_spins() {
        // Calibrated: 2 s at 1 GHz.
        assert!(!expired(2000, 1_000_000_000, 1_999_000_000, u64::MAX));
        assert!(expired(2000, 1_000_000_000, 2_001_000_000, 0));
        // Uncalibrated (cycles_per_sec() == 0): spin count only.
        assert!(!expired(2000, 0, u64::MAX, 2000 * SPINS_PER_MS));
        assert!(expired(2000, 0, 0, 2000 * SPINS_PER_MS + 1));
        // Bound 0 disables the watchdog.
        assert!(!expired(0, 1, u64::MAX, u64::MAX));
    }

    #[test]
    fn holds_are_counted_per_cpu() {
        let a = crate::sync::named_spin_lock("held_a", ());
        let b = crate::sync::named_rwlock_irq("held_b", ());
        assert_eq!(spinlocks_held(), 0);
        let ga = a.lock();
        let gb = b.write();
        assert_eq!(spinlocks_held(), 2);
        let other = std::thread::spawn(spinlocks_held).join().unwrap();
        assert_eq!(other, 0, "another CPU holds nothing");
        drop(gb);
        drop(ga);
        assert_eq!(spinlocks_held(), 0);
        assert_no_spinlocks_held("schedule()");
    }

    #[test]
    #[should_panic(expected = "schedule() with 1 spinlock(s) held on cpu")]
    fn scheduling_with_a_spinlock_held_panics() {
        let lock = crate::sync::named_spin_lock("held_across_schedule", ());
        let _g = lock.lock();
        assert_no_spinlocks_held("schedule()");
    }

    #[test]
    fn a_waiting_cpu_records_what_it_waits_for() {
        let cpu = platform::cpu_id();
        assert_eq!(waiting_for(cpu), None);
        {
            let mut outer = Watchdog::start_bounded("wait for", 0);
            for _ in 0..CHECK_EVERY {
                outer.tick("outer_wait", || Holder::Text("nobody"));
            }
            assert_eq!(waiting_for(cpu), Some(("wait for", "outer_wait")));
            {
                // A lock wait nested in it (an interrupt handler's, say).
                let mut inner = Watchdog::start();
                for _ in 0..CHECK_EVERY {
                    inner.tick("inner_lock", || Holder::Unknown);
                }
                assert_eq!(waiting_for(cpu), Some(("lock", "inner_lock")));
            }
            assert_eq!(waiting_for(cpu), Some(("wait for", "outer_wait")));
        }
        assert_eq!(waiting_for(cpu), None);
    }

    #[test]
    #[should_panic(expected = "wait for stuck_thing: cpu")]
    fn a_bounded_wait_panics_past_its_own_bound() {
        let mut w = Watchdog::start_bounded("wait for", 1);
        loop {
            w.tick("stuck_thing", || Holder::Text("nothing will come"));
            std::thread::yield_now();
        }
    }

    #[test]
    fn holder_is_named_in_messages() {
        let h = HolderCpu::new();
        assert_eq!(h.get(), Holder::Unknown);
        h.set();
        assert_eq!(h.get(), Holder::Cpu(platform::cpu_id()));
        assert_eq!(
            std::format!("{}", h.get()),
            std::format!("held by cpu {}", platform::cpu_id())
        );
        h.clear();
        assert_eq!(
            std::format!("{}", Holder::Readers(3)),
            "held by 3 reader(s)"
        );
    }
}
