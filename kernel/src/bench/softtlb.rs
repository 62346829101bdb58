//! QEMU's software TLB on every CPU: grown at boot to one size, and checked
//! after a benchmark (see `arch::softtlb` for why).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::smp;
use crate::arch::softtlb::{self, Size};
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::wait::wait_child;

/// The entries every CPU's table was grown to at boot; 0 if none.
static GROWN: AtomicU64 = AtomicU64::new(0);

/// The entries every CPU's table was grown to at boot, if it was.
pub(crate) fn grown() -> Option<u64> {
    match GROWN.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// One CPU's job: the table size asked for, and what the probes found.
struct Job {
    entries: u64,
    grow: bool,
    before: AtomicU64,
    after: AtomicU64,
}

/// A [`Size`] in one word: the count, with the top bit for "at least".
fn encode(s: Size) -> u64 {
    match s {
        Size::Entries(n) => n,
        Size::AtLeast(n) => n | 1 << 63,
    }
}

fn decode(v: u64) -> Size {
    if v >> 63 == 1 {
        Size::AtLeast(v & !(1 << 63))
    } else {
        Size::Entries(v)
    }
}

fn job(arg: usize) {
    // SAFETY: `arg` is the `Job` on `on_every_cpu`'s stack, which reaps
    // this task before it returns.
    let j = unsafe { &*(arg as *const Job) };
    let (before, after) = if j.grow {
        softtlb::grow(j.entries)
    } else {
        let s = softtlb::probe(j.entries);
        (s, s)
    };
    j.before.store(encode(before), Ordering::Relaxed);
    j.after.store(encode(after), Ordering::Relaxed);
}

/// Runs the probe (and the growing, if `grow`) on every online CPU in
/// turn; each CPU's sizes before and after.
fn on_every_cpu(entries: u64, grow: bool) -> Result<Vec<(Size, Size)>, String> {
    let mut out = Vec::new();
    for cpu in 0..smp::online() {
        let j = Job {
            entries,
            grow,
            before: AtomicU64::new(0),
            after: AtomicU64::new(0),
        };
        let mut args = CloneArgs::new("softtlb", job, &j as *const Job as usize);
        args.cpu = Some(cpu);
        copy_process(&args).map_err(|e| alloc::format!("cpu {cpu}: no task: {e:?}"))?;
        wait_child(None).map_err(|e| alloc::format!("cpu {cpu}: reaping: {e:?}"))?;
        out.push((
            decode(j.before.load(Ordering::Relaxed)),
            decode(j.after.load(Ordering::Relaxed)),
        ));
    }
    Ok(out)
}

/// `Size` as the report prints it.
fn show(s: Size) -> String {
    match s {
        Size::Entries(n) => alloc::format!("{n}"),
        Size::AtLeast(n) => alloc::format!(">= {n}"),
    }
}

/// The CPUs' sizes, run-length grouped: "256 (cpu 0), 64 (cpus 1-7)".
fn per_cpu(sizes: &[Size]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sizes.len() {
        let mut j = i;
        while j + 1 < sizes.len() && sizes[j + 1] == sizes[i] {
            j += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = if i == j {
            write!(out, "{} (cpu {i})", show(sizes[i]))
        } else {
            write!(out, "{} (cpus {i}-{j})", show(sizes[i]))
        };
        i = j + 1;
    }
    out
}

/// Grows every CPU's table to `entries`: the line for the boot log (which
/// says so if some CPU's table did not get there), or an error if the RAM
/// cannot hold the pages growing reads.
pub(crate) fn grow_every_cpu(entries: u64) -> Result<String, String> {
    let max = softtlb::max_entries();
    if entries > max {
        return Err(alloc::format!(
            "growing to {entries} entries reads {entries} pages of one memory region; the \
             largest has room for {max} (a power of two): give QEMU more memory (--mem) or ask for fewer"
        ));
    }
    let sizes = on_every_cpu(entries, true)?;
    let before: Vec<Size> = sizes.iter().map(|s| s.0).collect();
    let after: Vec<Size> = sizes.iter().map(|s| s.1).collect();
    if after.iter().all(|&s| s == Size::AtLeast(entries)) {
        GROWN.store(entries, Ordering::Relaxed);
        Ok(alloc::format!(
            "softtlb: QEMU's software TLB set to {entries} entries on every CPU (at boot: {}; \
             softtlb=)",
            per_cpu(&before)
        ))
    } else {
        Ok(alloc::format!(
            "softtlb: QEMU's software TLB did not reach {entries} entries on every CPU: {} \
             (at boot: {}); speeds may depend on which pages collide in it (softtlb=)",
            per_cpu(&after),
            per_cpu(&before)
        ))
    }
}

/// Probes every CPU's table again: the line for a report, saying whether
/// every table still has `entries`.
pub(crate) fn check_every_cpu(entries: u64) -> Result<String, String> {
    let sizes: Vec<Size> = on_every_cpu(entries, false)?
        .into_iter()
        .map(|s| s.1)
        .collect();
    if sizes.iter().all(|&s| s == Size::AtLeast(entries)) {
        Ok(alloc::format!(
            "QEMU's software TLB still has {entries} entries on every CPU"
        ))
    } else {
        Ok(alloc::format!(
            "QEMU's software TLB no longer has {entries} entries on every CPU: {} (a TLB \
             flush resized it; the rounds' speeds then depended on it)",
            per_cpu(&sizes)
        ))
    }
}
