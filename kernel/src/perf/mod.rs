//! A sampling profiler (Linux's `perf record -a -g`, much reduced).
//!
//! `profile=on` makes the HPET send every CPU an NMI `profile_hz` times a
//! second (`arch::hpet`); each NMI records the interrupted call chain
//! (`unwind`, by frame pointers) into its CPU's table (`table`), under the
//! tag the benchmark set: which kernel version's sample was running, and
//! at how many workers. Samples are taken where the code runs, interrupts
//! off or not (an NMI is not held off by IF=0). At the end the tables are
//! merged and printed as folded stacks of raw addresses, which the runner
//! symbolizes from the kernel ELF into flame graphs and tables:
//!
//! - `profile: on, ...` once, with the runtime address of `kernel_main`;
//! - `profile,version,workers,stack,count` rows, the stack root first and
//!   the leaf (the interrupted RIP) last, `[truncated]` first when the walk
//!   stopped early, `[dropped]` for samples the table had no room for;
//! - `profile_total,version,workers,samples,ops,cpu_cycles` rows;
//! - a closing line with the samples taken, which the rows add up to.
//!
//! The sampling path takes no lock and allocates nothing; each CPU writes
//! only its own table, and the tables are read only after sampling stops.

mod table;
mod unwind;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS};
use crate::sync::{SpinLock, named_spin_lock};
use table::{MAX_TAGS, Table};

/// `profile=` and `profile_hz=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProfileParams {
    pub(crate) on: bool,
    /// Samples per second per CPU.
    pub(crate) hz: u32,
}

/// The sampling rates `profile_hz=` takes.
pub(crate) const PROFILE_HZ: core::ops::RangeInclusive<u32> = 100..=20_000;

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams {
            on: false,
            hz: 4000,
        }
    }
}

/// Tag 0: samples outside any benchmark sample.
const OUTSIDE: u16 = 0;

/// What a tag stands for.
struct Tag {
    version: &'static str,
    workers: u32,
}

/// Tags by id (index); id 0 is [`OUTSIDE`]. Registered before sampling.
static TAGS: SpinLock<Vec<Tag>> = named_spin_lock("perf_tags", Vec::new());
/// Ops counted per tag.
static OPS: [AtomicU64; MAX_TAGS] = [const { AtomicU64::new(0) }; MAX_TAGS];
/// The tag every sample taken now gets.
static CURRENT: AtomicU32 = AtomicU32::new(OUTSIDE as u32);
/// Whether samples are recorded.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Each CPU's table (null: none).
static TABLES: [AtomicPtr<Table>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Per CPU: inside the sampling hook; samples taken; samples whose leaf
/// lay in the watched range. Written by that CPU only.
#[repr(align(64))]
struct PerCpuState {
    in_hook: AtomicBool,
    samples: AtomicU64,
    watch_hits: AtomicU64,
}
static CPU_STATE: [PerCpuState; MAX_CPUS] = [const {
    PerCpuState {
        in_hook: AtomicBool::new(false),
        samples: AtomicU64::new(0),
        watch_hits: AtomicU64::new(0),
    }
}; MAX_CPUS];
/// The address range `[start, end)` whose leaf samples are counted (a
/// selftest's check that samples land where the code runs).
static WATCH: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Watches `[start, end)` (an empty range: nothing).
pub(crate) fn set_watch(start: u64, end: u64) {
    WATCH[1].store(end, Ordering::Relaxed);
    WATCH[0].store(start, Ordering::Relaxed);
}

/// CPU `cpu`'s samples since boot, and how many had their leaf in the
/// watched range.
pub(crate) fn watch_counts(cpu: usize) -> (u64, u64) {
    let s = &CPU_STATE[cpu];
    (
        s.samples.load(Ordering::Relaxed),
        s.watch_hits.load(Ordering::Relaxed),
    )
}

/// The tag for `version` at `workers` (registered on first use; tags past
/// the table's size share the outside tag, which the report says).
pub(crate) fn tag(version: &'static str, workers: u32) -> u16 {
    let mut tags = TAGS.lock();
    if tags.is_empty() {
        tags.push(Tag {
            version: "-",
            workers: 0,
        });
    }
    if let Some(i) = tags
        .iter()
        .position(|t| t.version == version && t.workers == workers)
    {
        return i as u16;
    }
    if tags.len() >= MAX_TAGS {
        return OUTSIDE;
    }
    tags.push(Tag { version, workers });
    (tags.len() - 1) as u16
}

/// Wall cycles each tag was current, and when the current one began.
static TAG_CYCLES: [AtomicU64; MAX_TAGS] = [const { AtomicU64::new(0) }; MAX_TAGS];
static TAG_SINCE: AtomicU64 = AtomicU64::new(0);

/// Makes every sample from now on carry `tag` (`None`: outside). Called
/// by one CPU (the benchmark's driver).
pub(crate) fn set_tag(tag: Option<u16>) {
    let now = platform::cycles();
    let old = CURRENT.swap(u32::from(tag.unwrap_or(OUTSIDE)), Ordering::AcqRel);
    let since = TAG_SINCE.swap(now, Ordering::Relaxed);
    if since != 0 {
        TAG_CYCLES[old as usize % MAX_TAGS].fetch_add(now - since, Ordering::Relaxed);
    }
}

/// Adds `ops` to what `tag`'s samples were spent on.
pub(crate) fn add_ops(tag: u16, ops: u64) {
    OPS[usize::from(tag) % MAX_TAGS].fetch_add(ops, Ordering::Relaxed);
}

/// Whether the profiler is on (benchmarks tag their samples only then).
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The NMI's part (arch's `profile_nmi` hook): unwinds the interrupted
/// context and counts it in this CPU's table.
pub(crate) fn sample(rip: u64, rsp: u64, fp: u64) {
    let cpu = platform::cpu_id();
    let me = &CPU_STATE[cpu];
    me.in_hook.store(true, Ordering::SeqCst);
    if ACTIVE.load(Ordering::SeqCst) {
        me.samples
            .store(me.samples.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if (WATCH[0].load(Ordering::Relaxed)..WATCH[1].load(Ordering::Relaxed)).contains(&rip) {
            me.watch_hits
                .store(me.watch_hits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        let table = TABLES[cpu].load(Ordering::Acquire);
        if !table.is_null() {
            let s = unwind::unwind(rip, rsp, fp, stack_top(rsp), read_word);
            let tag = CURRENT.load(Ordering::Relaxed) as u16;
            // SAFETY: this CPU's table, written only here, by this CPU's
            // NMI handler (NMIs do not nest), and read only after `stop`
            // has seen this CPU leave the hook.
            unsafe { (*table).record(tag, &s) };
        }
    }
    me.in_hook.store(false, Ordering::Release);
}

#[cfg(target_os = "none")]
fn stack_top(rsp: u64) -> Option<u64> {
    crate::mm::stack::stack_top(rsp)
}

#[cfg(not(target_os = "none"))]
fn stack_top(_: u64) -> Option<u64> {
    None
}

fn read_word(addr: u64) -> u64 {
    // SAFETY: the unwinder reads only 8-aligned words between the
    // interrupted RSP and the top of its stack, all mapped.
    unsafe { (addr as *const u64).read_volatile() }
}

/// Starts sampling every online CPU at `hz`: the tables first, then the
/// NMIs. Returns the HPET comparator used.
#[cfg(target_os = "none")]
pub(crate) fn start(hz: u32) -> Result<u32, crate::arch::hpet::HpetError> {
    for slot in TABLES.iter().take(platform::cpus_online()) {
        if slot.load(Ordering::Relaxed).is_null() {
            slot.store(alloc::boxed::Box::into_raw(Table::new()), Ordering::Release);
        }
    }
    let _ = tag("-", 0);
    TAG_SINCE.store(platform::cycles(), Ordering::Relaxed);
    ACTIVE.store(true, Ordering::SeqCst);
    crate::arch::hpet::start_nmi_broadcast(hz).inspect_err(|_| {
        ACTIVE.store(false, Ordering::SeqCst);
    })
}

/// Stops sampling and waits until no CPU is inside the hook, so the
/// tables can be read.
#[cfg(target_os = "none")]
pub(crate) fn stop() {
    crate::arch::hpet::stop_nmi_broadcast();
    ACTIVE.store(false, Ordering::SeqCst);
    set_tag(None);
    for s in &CPU_STATE {
        while s.in_hook.load(Ordering::SeqCst) {
            platform::cpu_relax();
        }
    }
}

/// Prints the rows, the totals and the closing line (after [`stop`]).
/// A tag's `cpu_cycles` are the wall cycles it was current times the CPUs
/// sampled: a CPU the host did not run meanwhile took fewer samples, so
/// the runner splits these cycles by the samples' shares.
pub(crate) fn print_report(out: &mut dyn Write) {
    let cpus = platform::cpus_online() as u64;
    // (tag, frames leaf first, truncated) -> count
    let mut rows: BTreeMap<(u16, Vec<u64>, bool), u64> = BTreeMap::new();
    let mut dropped = [0u64; MAX_TAGS];
    let mut truncated = 0;
    let mut taken = 0;
    for slot in &TABLES {
        let t = slot.load(Ordering::Acquire);
        if t.is_null() {
            continue;
        }
        // SAFETY: sampling has stopped (no CPU is in the hook), so nothing
        // writes the table now.
        let t = unsafe { &*t };
        for e in t.entries() {
            let key = (e.tag, e.frames[..e.depth as usize].to_vec(), e.truncated);
            *rows.entry(key).or_default() += u64::from(e.count);
        }
        for (d, n) in dropped.iter_mut().zip(t.dropped) {
            *d += n;
        }
        truncated += t.truncated;
        taken += t.taken;
    }
    let tags = TAGS.lock();
    let name = |tag: u16| -> (&'static str, u32) {
        tags.get(usize::from(tag))
            .map_or(("-", 0), |t| (t.version, t.workers))
    };
    let mut per_tag = [0u64; MAX_TAGS];
    let _ = writeln!(out, "profile,version,workers,stack,count");
    let mut line = alloc::string::String::new();
    for ((tag, frames, trunc), count) in &rows {
        let (version, workers) = name(*tag);
        line.clear();
        let _ = write!(line, "profile,{version},{workers},");
        if *trunc {
            line.push_str("[truncated];");
        }
        for (i, f) in frames.iter().rev().enumerate() {
            if i > 0 {
                line.push(';');
            }
            let _ = write!(line, "{f:#x}");
        }
        let _ = writeln!(out, "{line},{count}");
        per_tag[usize::from(*tag)] += count;
    }
    for (tag, &d) in dropped.iter().enumerate() {
        if d > 0 {
            let (version, workers) = name(tag as u16);
            let _ = writeln!(out, "profile,{version},{workers},[dropped],{d}");
            per_tag[tag] += d;
        }
    }
    let _ = writeln!(out, "profile_total,version,workers,samples,ops,cpu_cycles");
    for (tag, &n) in per_tag.iter().enumerate() {
        if n > 0 || (tag > 0 && tag < tags.len()) {
            let (version, workers) = name(tag as u16);
            let ops = OPS[tag].load(Ordering::Relaxed);
            let cycles = TAG_CYCLES[tag].load(Ordering::Relaxed) * cpus;
            let _ = writeln!(out, "profile_total,{version},{workers},{n},{ops},{cycles}");
        }
    }
    let in_rows: u64 = per_tag.iter().sum();
    let _ = writeln!(
        out,
        "profile: {taken} samples taken, {in_rows} in rows, {} dropped (stack table full), {truncated} truncated unwinds",
        dropped.iter().sum::<u64>()
    );
}
