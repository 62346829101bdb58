//! Lock statistics per lock class (Linux's `lock_stat`, much reduced).
//!
//! A class is a lock name: every lock built with the same name (say, the
//! per-object locks of one structure) adds to the same counters. For each
//! class and mode (exclusive: mutex holders and rwlock writers; shared:
//! rwlock readers) we count acquisitions, contended acquisitions (those that
//! had to spin), wait cycles (total and max, from the first failed attempt
//! to the acquisition) and hold cycles (total and max, from acquisition to
//! release).
//!
//! Statistics are switched at run time ([`set_enabled`], for the
//! benchmark's `lockstat=on|off`) and cost almost nothing when off (see
//! [`acquired`] and [`released`]). Classes live in a fixed registry (see
//! [`LockKey`]).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::mode;

use super::debug::{Holder, Watchdog};
use crate::platform::{self, IrqFlags};

/// Whether statistics are being collected (the switch is a bit of
/// [`super::mode`], which every acquisition reads anyway).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    mode::stats(mode::load())
}

/// Turns statistics on or off; returns the previous setting.
pub(crate) fn set_enabled(on: bool) -> bool {
    mode::set_stats(on)
}

/// Which side of a lock an acquisition took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A mutex, or a reader-writer lock's writer.
    Exclusive = 0,
    /// A reader-writer lock's reader.
    Shared = 1,
}

/// One mode's numbers, as read by [`read`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockCounters {
    pub(crate) acquisitions: u64,
    /// Acquisitions that found the lock taken and had to wait.
    pub(crate) contended: u64,
    pub(crate) wait_cycles_total: u64,
    pub(crate) wait_cycles_max: u64,
    pub(crate) hold_cycles_total: u64,
    pub(crate) hold_cycles_max: u64,
}

/// One lock class's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockStats {
    pub(crate) name: &'static str,
    /// Mutex acquisitions, or rwlock write acquisitions.
    pub(crate) exclusive: LockCounters,
    /// Rwlock read acquisitions.
    pub(crate) shared: LockCounters,
}

impl LockStats {
    /// Acquisitions in either mode.
    pub(crate) fn acquisitions(&self) -> u64 {
        self.exclusive.acquisitions + self.shared.acquisitions
    }
}

#[derive(Default)]
struct Counters {
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_total: AtomicU64,
    wait_max: AtomicU64,
    hold_total: AtomicU64,
    hold_max: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            acquisitions: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            wait_total: AtomicU64::new(0),
            wait_max: AtomicU64::new(0),
            hold_total: AtomicU64::new(0),
            hold_max: AtomicU64::new(0),
        }
    }

    fn read(&self) -> LockCounters {
        LockCounters {
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            wait_cycles_total: self.wait_total.load(Ordering::Relaxed),
            wait_cycles_max: self.wait_max.load(Ordering::Relaxed),
            hold_cycles_total: self.hold_total.load(Ordering::Relaxed),
            hold_cycles_max: self.hold_max.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.acquisitions,
            &self.contended,
            &self.wait_total,
            &self.wait_max,
            &self.hold_total,
            &self.hold_max,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A registry slot. Cache-line aligned so classes don't false-share.
#[repr(align(128))]
struct Class {
    /// The name, set once under [`REGISTER`] before [`COUNT`] publishes it.
    name_ptr: AtomicUsize,
    name_len: AtomicUsize,
    modes: [Counters; 2],
}

impl Class {
    const fn new() -> Self {
        Class {
            name_ptr: AtomicUsize::new(0),
            name_len: AtomicUsize::new(0),
            modes: [Counters::new(), Counters::new()],
        }
    }

    fn name(&self) -> &'static str {
        let ptr = self.name_ptr.load(Ordering::Relaxed) as *const u8;
        let len = self.name_len.load(Ordering::Relaxed);
        // SAFETY: a published class's (ptr, len) were copied from a
        // `&'static str` under REGISTER before COUNT's Release store, and
        // readers reach the class only below COUNT's Acquire load.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) }
    }

    fn stats(&self) -> LockStats {
        LockStats {
            name: self.name(),
            exclusive: self.modes[Mode::Exclusive as usize].read(),
            shared: self.modes[Mode::Shared as usize].read(),
        }
    }
}

/// Registry capacity; the last slot is the `(other)` overflow class: when
/// the registry is full, further names share it.
pub(crate) const MAX_CLASSES: usize = 128;
const OVERFLOW_NAME: &str = "(other)";

static CLASSES: [Class; MAX_CLASSES] = [const { Class::new() }; MAX_CLASSES];
/// Published classes; slot `i < COUNT` is initialized.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Serializes registration, so a name is registered once (a plain
/// test-and-set flag: registration is rare and must not depend on the lock
/// algorithms it measures).
static REGISTERING: AtomicBool = AtomicBool::new(false);

/// Takes [`REGISTERING`] with IRQs off (an interrupt handler may take a
/// lock, hence register, on this CPU), bounded by the lock watchdog.
fn lock_registry() -> IrqFlags {
    let flags = platform::local_irq_save();
    let mut watchdog = None;
    while REGISTERING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        platform::cpu_relax();
        watchdog
            .get_or_insert_with(Watchdog::start)
            .tick("lockstat registry", || Holder::Unknown);
    }
    flags
}

fn unlock_registry(flags: IrqFlags) {
    REGISTERING.store(false, Ordering::Release);
    platform::local_irq_restore(flags);
}

fn published() -> &'static [Class] {
    &CLASSES[..COUNT.load(Ordering::Acquire)]
}

fn find(name: &str) -> Option<usize> {
    published().iter().position(|c| c.name() == name)
}

/// Finds or registers the class called `name`.
#[cold]
fn register(name: &'static str) -> usize {
    if let Some(i) = find(name) {
        return i;
    }
    let flags = lock_registry();
    let i = find(name).unwrap_or_else(|| {
        let n = COUNT.load(Ordering::Relaxed);
        let (i, name) = if n < MAX_CLASSES - 1 {
            (n, name)
        } else if n == MAX_CLASSES - 1 {
            (n, OVERFLOW_NAME)
        } else {
            return MAX_CLASSES - 1;
        };
        CLASSES[i]
            .name_ptr
            .store(name.as_ptr() as usize, Ordering::Relaxed);
        CLASSES[i].name_len.store(name.len(), Ordering::Relaxed);
        COUNT.store(i + 1, Ordering::Release);
        i
    });
    unlock_registry(flags);
    i
}

/// A lock's identity for statistics: its name, and the registry index of
/// that name's class plus one, cached at first use (0: not looked up yet).
/// Passed by reference, so the fast path does not even load the name.
///
/// Classes live in a fixed registry, found by name on a lock's first
/// acquisition with statistics on and cached in the lock's `LockKey`;
/// registering is serialized by a test-and-set flag ([`REGISTERING`]).
/// When the registry is full, further names share a last `(other)` class.
pub(crate) struct LockKey {
    class: AtomicU32,
    name: &'static str,
}

impl LockKey {
    pub(crate) const fn new(name: &'static str) -> Self {
        LockKey {
            class: AtomicU32::new(0),
            name,
        }
    }

    /// The lock's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    fn counters(&self, mode: Mode) -> &'static Counters {
        let cached = self.class.load(Ordering::Relaxed);
        let i = if cached != 0 {
            cached as usize - 1
        } else {
            let i = register(self.name);
            self.class.store(i as u32 + 1, Ordering::Relaxed);
            i
        };
        &CLASSES[i].modes[mode as usize]
    }
}

/// The start of a hold, kept in the lock guard: 0 when statistics were off
/// at acquisition (then the release records nothing).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HoldStart(u64);

/// Records an acquisition (fast and slow path alike) and starts the hold
/// clock. Off, an acquisition pays one relaxed load of the mode byte
/// ([`super::mode`]) and a predictable branch. On, it reads the clock and
/// updates shared atomic counters; the lock benchmark shows what that
/// costs.
#[inline(always)]
pub(crate) fn acquired(key: &LockKey, mode: Mode) -> HoldStart {
    acquired_if(enabled(), key, mode)
}

/// [`acquired`] for a caller that has read the switch already.
#[inline(always)]
pub(crate) fn acquired_if(stats: bool, key: &LockKey, mode: Mode) -> HoldStart {
    if stats {
        acquired_slow(key, mode)
    } else {
        HoldStart(0)
    }
}

#[cold]
#[inline(never)]
fn acquired_slow(key: &LockKey, mode: Mode) -> HoldStart {
    let c = key.counters(mode);
    c.acquisitions.fetch_add(1, Ordering::Relaxed);
    HoldStart(platform::cycles().max(1))
}

/// Records that an acquisition waited `wait` cycles (slow path only).
pub(crate) fn contended(key: &LockKey, mode: Mode, wait: u64) {
    if enabled() {
        let c = key.counters(mode);
        c.contended.fetch_add(1, Ordering::Relaxed);
        c.wait_total.fetch_add(wait, Ordering::Relaxed);
        c.wait_max.fetch_max(wait, Ordering::Relaxed);
    }
}

/// Records a release of a hold that began at `start`. With statistics off
/// at acquisition this is a test of a value already in a register (the
/// guard's hold start, 0 then); otherwise it reads the clock again and
/// updates the class's hold counters.
#[inline(always)]
pub(crate) fn released(key: &LockKey, mode: Mode, start: HoldStart) {
    if start.0 != 0 {
        released_slow(key, mode, start.0);
    }
}

#[cold]
#[inline(never)]
fn released_slow(key: &LockKey, mode: Mode, start: u64) {
    let hold = platform::cycles().saturating_sub(start);
    let c = key.counters(mode);
    c.hold_total.fetch_add(hold, Ordering::Relaxed);
    c.hold_max.fetch_max(hold, Ordering::Relaxed);
}

/// The numbers of the class called `name`, if a lock of that name was
/// taken with statistics on.
pub(crate) fn read(name: &str) -> Option<LockStats> {
    find(name).map(|i| CLASSES[i].stats())
}

/// Calls `f` with every registered class's numbers, in registration order.
pub(crate) fn for_each(mut f: impl FnMut(&LockStats)) {
    for class in published() {
        f(&class.stats());
    }
}

/// Zeroes every class's counters (the classes stay registered). Meant for
/// quiescent moments: an acquisition racing with it may be half counted.
pub(crate) fn reset() {
    for class in published() {
        for mode in &class.modes {
            mode.reset();
        }
    }
}

/// Prints a table of every class that was used since the last [`reset`]:
/// one row per class and mode, cycles of `platform::cycles()`.
pub(crate) fn print_table() {
    println!(
        "lockstat: cycles at {} Hz, statistics {}",
        platform::cycles_per_sec(),
        if enabled() { "on" } else { "off" }
    );
    println!(
        "{:<24} {:<5} {:>12} {:>12} {:>14} {:>12} {:>12} {:>14} {:>12} {:>12}",
        "lock",
        "mode",
        "acquired",
        "contended",
        "wait-total",
        "wait-avg",
        "wait-max",
        "hold-total",
        "hold-avg",
        "hold-max"
    );
    for_each(|s| {
        for (mode, c) in [("excl", &s.exclusive), ("read", &s.shared)] {
            if c.acquisitions == 0 && c.contended == 0 {
                continue;
            }
            println!(
                "{:<24} {:<5} {:>12} {:>12} {:>14} {:>12} {:>12} {:>14} {:>12} {:>12}",
                s.name,
                mode,
                c.acquisitions,
                c.contended,
                c.wait_cycles_total,
                c.wait_cycles_total.checked_div(c.contended).unwrap_or(0),
                c.wait_cycles_max,
                c.hold_cycles_total,
                c.hold_cycles_total.checked_div(c.acquisitions).unwrap_or(0),
                c.hold_cycles_max
            );
        }
    });
}

/// Serializes the unit tests that flip the global switch or count.
#[cfg(all(test, not(loom)))]
pub(crate) fn test_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
