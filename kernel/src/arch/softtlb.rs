//! QEMU's software TLB (TCG): measured, and set to one size on every CPU.
//!
//! Under TCG every guest load and store looks its page up in the vCPU's
//! software TLB: a direct-mapped table (the entry is the virtual page
//! number modulo the table's size) backed by an 8-entry victim table. A hit
//! costs a few host instructions; a miss calls into QEMU, which walks the
//! guest's page tables (measured here: ~5 cycles against ~200-400). QEMU
//! sizes the table only when the guest flushes its TLB
//! (accel/tcg/cputlb.c, `tlb_mmu_resize_locked`): doubled when more than
//! 70% of it was filled since the last flush, shrunk to fit once a 100 ms
//! window passes below 30%. This kernel flushes no TLB after boot, so each
//! CPU keeps the size its last boot-time flush left: 256 entries on the boot
//! CPU, 64 on the others (every boot measured). The threadspawn loop touches
//! more pages than that (tasks, stacks, pids, IDR nodes, locks), so its
//! speed depended on which of those pages collided in a 64-entry table,
//! and that depends on which cached objects each CPU happens to reuse,
//! which differs from boot to boot: the versions' ratios moved by several
//! percent per boot, and the collisions, not the locks, set them.
//!
//! So at boot every CPU grows its table to 16384 entries (`softtlb=`): the
//! boot CPU and each AP as it comes up ([`grow_this_cpu`], no task needed),
//! before anything is measured. A CPU fills
//! every entry (reading as many consecutive pages) and flushes, which
//! doubles it, until a probe finds the size reached. Nothing flushes after,
//! so the size holds for the boot (the threadspawn report probes again
//! after its rounds). A real x86 core's second-level TLB holds 1.5-3 K
//! entries, several ways each, and Linux maps its direct map with 2 MiB and
//! 1 GiB pages; a direct-mapped table this size rarely sees a collision
//! among the loop's pages.
//!
//! The probe times loads of [`PROBE_PAGES`] pages `stride` pages apart:
//! in a table of `n` entries they take distinct entries while
//! `PROBE_PAGES * stride <= n`, and collide (each load then a miss or a
//! victim swap, both calls into QEMU) once the stride is larger.

use super::cpu::rdtsc;
use super::percpu::MAX_CPUS;
use super::physmap::{PAGE_SIZE, phys_to_virt};
use core::sync::atomic::{AtomicU64, Ordering};

/// The smallest table QEMU keeps (`CPU_TLB_DYN_MIN_BITS`).
pub(crate) const MIN_ENTRIES: u64 = 64;
/// Pages each probe loads.
const PROBE_PAGES: u64 = 32;
/// Loads over all probe pages per timing; the least of `PROBE_TRIES`
/// timings counts (a host interruption only ever adds).
const PROBE_LAPS: u64 = 20;
const PROBE_TRIES: u32 = 5;

/// Physical memory the probe and the fill read (never write): the start
/// and length of the largest usable region, recorded at boot.
static WINDOW_START: AtomicU64 = AtomicU64::new(0);
static WINDOW_LEN: AtomicU64 = AtomicU64::new(0);

/// Records the RAM the probe may read: `len` bytes at physical `start`.
pub(crate) fn set_window(start: u64, len: u64) {
    WINDOW_START.store(start, Ordering::Relaxed);
    WINDOW_LEN.store(len, Ordering::Relaxed);
}

/// The largest table the window lets this module grow and check: growing
/// to `n` reads `n` consecutive pages.
pub(crate) fn max_entries() -> u64 {
    let pages = WINDOW_LEN.load(Ordering::Relaxed) / PAGE_SIZE;
    if pages < MIN_ENTRIES {
        0
    } else {
        1 << (63 - pages.leading_zeros())
    }
}

/// Reads one word of window page `page`.
fn touch(page: u64) {
    let pa = WINDOW_START.load(Ordering::Relaxed) + page * PAGE_SIZE;
    // SAFETY: `page` lies inside the window (callers keep `page` below
    // `max_entries()`), RAM mapped by the physical-memory map; the read
    // changes nothing, and a word being written meanwhile is read whole or
    // not (its value is discarded).
    unsafe {
        core::ptr::read_volatile(phys_to_virt(pa) as *const u64);
    }
}

/// Cycles per load of `PROBE_PAGES` pages `stride` pages apart (the least
/// of several timings).
fn cycles_per_load(stride: u64) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..PROBE_TRIES {
        let t0 = rdtsc();
        for _ in 0..PROBE_LAPS {
            for i in 0..PROBE_PAGES {
                touch(i * stride);
            }
        }
        best = best.min(rdtsc() - t0);
    }
    best / (PROBE_LAPS * PROBE_PAGES)
}

/// What a probe found about this CPU's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    /// This many entries.
    Entries(u64),
    /// At least this many (no collision within the pages probed).
    AtLeast(u64),
}

/// Probes this CPU's table up to `limit` entries (a power of two, at most
/// [`max_entries`]).
pub(crate) fn probe(limit: u64) -> Size {
    let fast = cycles_per_load(1).min(cycles_per_load(1));
    // A collision costs a call into QEMU: tens of times a hit. Four times
    // plus a margin tells them apart and ignores the host's own cache and
    // TLB costs of wide strides.
    let slow = fast * 4 + 30;
    let mut stride = 1;
    // `PROBE_PAGES * stride` pages are read: the first stride that collides
    // (2n / PROBE_PAGES for a table of n) must stay within `limit` pages,
    // so tables up to `limit / 2` are measured and larger ones bounded.
    while PROBE_PAGES * stride <= limit {
        if cycles_per_load(stride) > slow {
            return Size::Entries(stride * PROBE_PAGES / 2);
        }
        stride *= 2;
    }
    Size::AtLeast(limit)
}

/// Grows this CPU's table to at least `entries` (a power of two from
/// [`MIN_ENTRIES`] to [`max_entries`]); returns what the probe found before
/// and after.
pub(crate) fn grow(entries: u64) -> (Size, Size) {
    let before = probe(entries);
    let mut now = before;
    // A table smaller than `entries` has at most `entries / 2` of them, all
    // filled by reading `entries / 2` consecutive pages: the flush after it
    // doubles the table. One doubling per step, from 64 entries at most.
    let steps = (entries / MIN_ENTRIES).trailing_zeros() + 1;
    for _ in 0..steps {
        if matches!(now, Size::AtLeast(_)) {
            break;
        }
        for page in 0..entries / 2 {
            touch(page);
        }
        x86_64::instructions::tlb::flush_all();
        now = probe(entries);
    }
    (before, now)
}

/// A [`Size`] in one word: the count, with the top bit for "at least".
pub(crate) fn encode(s: Size) -> u64 {
    match s {
        Size::Entries(n) => n,
        Size::AtLeast(n) => n | 1 << 63,
    }
}

/// The [`Size`] [`encode`] made `v` from.
pub(crate) fn decode(v: u64) -> Size {
    if v >> 63 == 1 {
        Size::AtLeast(v & !(1 << 63))
    } else {
        Size::Entries(v)
    }
}

/// The entries every CPU grows its table to as it comes up; 0: none.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// Each CPU's table before and after growing (encoded; 0 until it has).
static BEFORE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static AFTER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Sets the entries every CPU grows its table to (0: none), before any AP
/// starts; `entries` is a power of two within [`max_entries`].
pub(crate) fn set_target(entries: u64) {
    TARGET.store(entries, Ordering::Release);
}

/// The entries every CPU grows its table to; 0 if none.
pub(crate) fn target() -> u64 {
    TARGET.load(Ordering::Acquire)
}

/// Grows this CPU's table to the target and records what the probes found
/// under `index`; nothing if there is no target. Each CPU once, at boot:
/// an AP before it makes its idle task, which the boot CPU waits for (and
/// whose publication, a Release store, orders these records before it).
pub(crate) fn grow_this_cpu(index: usize) {
    let entries = target();
    if entries == 0 {
        return;
    }
    let (before, after) = grow(entries);
    BEFORE[index].store(encode(before), Ordering::Relaxed);
    AFTER[index].store(encode(after), Ordering::Relaxed);
}

/// CPU `index`'s table before and after it grew it.
pub(crate) fn grown_sizes(index: usize) -> (Size, Size) {
    (
        decode(BEFORE[index].load(Ordering::Relaxed)),
        decode(AFTER[index].load(Ordering::Relaxed)),
    )
}
