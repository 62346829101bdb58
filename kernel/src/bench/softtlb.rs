//! QEMU's software TLB on every CPU (see `arch::softtlb` for why): the
//! boot log's line once every CPU has grown its table, and the check after
//! a benchmark that the tables kept their size.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::smp;
use crate::arch::softtlb::{self, Size, decode, encode};
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::wait::wait_child;

/// The entries every CPU's table reached at boot; 0 if not grown.
static GROWN: AtomicU64 = AtomicU64::new(0);

/// The entries every CPU's table was grown to at boot, if it was.
pub(crate) fn grown() -> Option<u64> {
    match GROWN.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// `Size` as the report prints it.
fn show(s: Size) -> String {
    match s {
        Size::Entries(n) => alloc::format!("{n}"),
        Size::AtLeast(n) => alloc::format!(">= {n}"),
    }
}

/// CPUs and their sizes, run-length grouped: "256 (cpu 0), 64 (cpus 1-7)".
fn per_cpu(sizes: &[(usize, Size)]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sizes.len() {
        let mut j = i;
        while j + 1 < sizes.len()
            && sizes[j + 1].1 == sizes[i].1
            && sizes[j + 1].0 == sizes[j].0 + 1
        {
            j += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let (first, last) = (sizes[i].0, sizes[j].0);
        let _ = if i == j {
            write!(out, "{} (cpu {first})", show(sizes[i].1))
        } else {
            write!(out, "{} (cpus {first}-{last})", show(sizes[i].1))
        };
        i = j + 1;
    }
    out
}

/// Grows the boot CPU's table and returns the boot log's line. Every AP
/// grew its own as it came up, before its idle task, which the boot CPU
/// has waited for (`boot::wait_for_ap_idle_tasks`).
pub(crate) fn grow_boot_cpu() -> String {
    let entries = softtlb::target();
    softtlb::grow_this_cpu(0);
    let online = smp::online();
    let sizes: Vec<(Size, Size)> = (0..online).map(softtlb::grown_sizes).collect();
    let before: Vec<(usize, Size)> = sizes.iter().map(|s| s.0).enumerate().collect();
    let after: Vec<(usize, Size)> = sizes.iter().map(|s| s.1).enumerate().collect();
    if after.iter().all(|&(_, s)| s == Size::AtLeast(entries)) {
        GROWN.store(entries, Ordering::Relaxed);
        alloc::format!(
            "softtlb: QEMU's software TLB set to {entries} entries on every CPU (at boot: {}; \
             softtlb=)",
            per_cpu(&before)
        )
    } else {
        alloc::format!(
            "softtlb: QEMU's software TLB did not reach {entries} entries on every CPU: {} \
             (at boot: {}); speeds may depend on which pages collide in it (softtlb=)",
            per_cpu(&after),
            per_cpu(&before)
        )
    }
}

/// One CPU's probe: the bound, and what it found.
struct Job {
    limit: u64,
    found: AtomicU64,
}

fn job(arg: usize) {
    // SAFETY: `arg` is the `Job` on `probe_cpus`'s stack, which reaps this
    // task before it returns.
    let j = unsafe { &*(arg as *const Job) };
    j.found
        .store(encode(softtlb::probe(j.limit)), Ordering::Relaxed);
}

/// Probes the tables of `cpus` (up to `limit` entries), one task on each
/// in turn.
fn probe_cpus(cpus: &[usize], limit: u64) -> Result<Vec<(usize, Size)>, String> {
    let mut out = Vec::new();
    for &cpu in cpus {
        let j = Job {
            limit,
            found: AtomicU64::new(0),
        };
        let mut args = CloneArgs::new("softtlb", job, &j as *const Job as usize);
        args.cpu = Some(cpu);
        let t = copy_process(&args).map_err(|e| alloc::format!("cpu {cpu}: no task: {e:?}"))?;
        // By name: any other child's exit must not end this wait while the
        // task still reads `j`.
        wait_child(Some(&t)).map_err(|e| alloc::format!("cpu {cpu}: reaping: {e:?}"))?;
        out.push((cpu, decode(j.found.load(Ordering::Relaxed))));
    }
    Ok(out)
}

/// Every CPU's table as the probe finds it (up to `limit` entries or what
/// the RAM allows), grouped: for `softtlb=off`.
pub(crate) fn probe_every_cpu(limit: u64) -> Result<String, String> {
    let cpus: Vec<usize> = (0..smp::online()).collect();
    let limit = softtlb::max_entries().min(limit);
    Ok(per_cpu(&probe_cpus(&cpus, limit)?))
}

/// Probes the tables of `cpus` (those a benchmark ran on) again: the line
/// for its report, saying whether each still has the `entries` it was
/// grown to (a TLB flush would have resized it).
pub(crate) fn check(cpus: &[usize], entries: u64) -> Result<String, String> {
    let sizes = probe_cpus(cpus, entries)?;
    let list = cpus
        .iter()
        .map(|c| alloc::format!("{c}"))
        .collect::<Vec<_>>();
    if sizes.iter().all(|&(_, s)| s == Size::AtLeast(entries)) {
        Ok(alloc::format!(
            "QEMU's software TLB still has {entries} entries on every CPU the benchmark ran on \
             (cpus {})",
            list.join(",")
        ))
    } else {
        Ok(alloc::format!(
            "QEMU's software TLB no longer has {entries} entries on every CPU the benchmark ran \
             on: {} (a TLB flush resized it; the rounds' speeds then depended on it)",
            per_cpu(&sizes)
        ))
    }
}
