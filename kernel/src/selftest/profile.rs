//! `profile`: the profiler samples where the code runs. Every CPU spins
//! for a second in a known function (`pidlab_profile_spin`, written in
//! assembly so its address range is exact), half of that time with
//! interrupts off; at least 90% of each CPU's samples meanwhile must have
//! their leaf inside it (the rest land on the way in and out). Needs
//! `profile=on`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::smp;
use crate::perf;
use crate::platform::{self, Parallel};
use crate::task::sched::Cpus;

// `pidlab_profile_spin(deadline)`: spins until the TSC reaches `deadline`
// (in RDI), with a frame of its own so the unwinder finds its caller.
global_asm!(
    ".global pidlab_profile_spin",
    ".global pidlab_profile_spin_end",
    "pidlab_profile_spin:",
    "push rbp",
    "mov rbp, rsp",
    "2:",
    "pause",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "cmp rax, rdi",
    "jb 2b",
    "pop rbp",
    "ret",
    "pidlab_profile_spin_end:",
);

unsafe extern "C" {
    fn pidlab_profile_spin(deadline: u64);
    static pidlab_profile_spin_end: u8;
}

/// How long each CPU spins.
const SPIN_MS: u64 = 1000;

pub(super) fn profile_lands_in_the_spinning_function() {
    assert!(
        perf::active(),
        "test=profile needs profile=on (the sampling profiler)"
    );
    let n = smp::online();
    let start = pidlab_profile_spin as *const () as u64;
    let end = &raw const pidlab_profile_spin_end as u64;
    let tag = perf::tag("selftest-profile", n as u32);
    let before: alloc::vec::Vec<(u64, u64)> = (0..n).map(perf::watch_counts).collect();
    perf::set_watch(start, end);
    perf::set_tag(Some(tag));
    let cps = platform::cycles_per_sec();
    let spun = [const { AtomicU64::new(0) }; crate::platform::MAX_CPUS];
    Cpus.run(n, &|w| {
        let half = cps * SPIN_MS / 2000;
        let t0 = platform::cycles();
        // SAFETY: the assembly reads the TSC and compares; no memory.
        unsafe { pidlab_profile_spin(t0 + half) };
        let flags = platform::local_irq_save();
        // SAFETY: as above; interrupts off on purpose (NMIs still land).
        unsafe { pidlab_profile_spin(platform::cycles() + half) };
        platform::local_irq_restore(flags);
        spun[w].store(platform::cycles() - t0, Ordering::Relaxed);
    });
    perf::set_tag(None);
    perf::set_watch(0, 0);
    for (cpu, b) in before.iter().enumerate() {
        let (samples, hits) = perf::watch_counts(cpu);
        let (samples, hits) = (samples - b.0, hits - b.1);
        let ms = spun[cpu].load(Ordering::Relaxed) * 1000 / cps.max(1);
        println!(
            "selftest profile: cpu {cpu}: {samples} samples in {ms} ms, {hits} in pidlab_profile_spin ({}%)",
            hits * 100 / samples.max(1)
        );
        assert!(samples > 0, "cpu {cpu}: no sample in {ms} ms");
        assert!(
            hits * 10 >= samples * 9,
            "cpu {cpu}: only {hits} of {samples} samples in the spinning function"
        );
    }
    println!(
        "selftest profile: ok (pidlab_profile_spin at {start:#x}..{end:#x}, tag selftest-profile)"
    );
}
