//! The kernel's command-line keys and what each value may be: the text
//! the runner's `--help` and the parser's errors show.

use pidlab_abi::Accel;

/// Every key the kernel accepts and what its value may be.
pub(crate) const KEYS: &[(&str, &str)] = &[
    (
        "bench",
        "threadspawn (the default), none, locks (lock microbenchmark), pidalloc (alloc_pid cost vs live pids), script (pidctl, set by --script), shell (pidctl on the console) or soak (fault-injected spawn/exit/reap and the invariant check)",
    ),
    (
        "heap",
        "auto, or a size in bytes with an optional K, M or G suffix (at least 1M)",
    ),
    ("loglevel", "off, error, warn, info, debug or trace"),
    ("test", "a comma-separated list of in-kernel test cases"),
    (
        Accel::CMDLINE_KEY,
        "tcg, tcg-single or kvm (set by the runner)",
    ),
    ("hz", "a timer rate from 10 to 10000 interrupts per second"),
    (
        "lock",
        "auto (the default: tas when vCPUs outnumber host cores, else ticket), ticket, pv-ticket, qspinlock or tas",
    ),
    (
        "host_cpus",
        "the host's core count, from 1 to 4096 (set by the runner)",
    ),
    (
        "lockwait_ms",
        "a bound on any lock wait from 10 to 600000 milliseconds (default 2000); a longer wait panics naming the lock",
    ),
    (
        "softlockup_ms",
        "0 (off) or a bound from 1000 to 600000 milliseconds without a scheduling point",
    ),
    (
        "hardlockup_ms",
        "0 (off) or a bound from 1000 to 600000 milliseconds without a timer tick",
    ),
    (
        "workers",
        "a comma-separated list of 1 to 8 worker counts, each 1 to 64",
    ),
    ("samples", "a sample count from 1 to 1000"),
    ("sample_ms", "a sample length from 1 to 60000 milliseconds"),
    ("ns_depth", "a pid namespace depth from 0 to 31"),
    (
        "strategy",
        "the kernel version pidctl runs (bench=script, shell): stock (6.14, the default), pidmap-once, exit-deferred (6.15), both (6.15 + the alloc change), v7.0 or lockless",
    ),
    (
        "strategies",
        "a comma-separated list of distinct stock, pidmap-once, exit-deferred, both, v7.0, lockless (default stock,exit-deferred,both,v7.0)",
    ),
    ("lockstat", "on or off"),
    (
        "profile",
        "on or off: sample every CPU from an NMI and print folded stacks (any bench)",
    ),
    (
        "nohz",
        "on (the default: an idle CPU stops its timer tick) or off (every CPU ticks)",
    ),
    (
        "softtlb",
        "off, or the entries (a power of two from 64 to 65536) every CPU's QEMU software TLB is grown to at boot (default 16384 under TCG, off under KVM)",
    ),
    (
        "profile_hz",
        "a sampling rate from 100 to 20000 per second per CPU (default 4000)",
    ),
    (
        "root_pids",
        "live tasks parked in the root pid namespace before the bench, from 0 to 100000 (default 300; 0 for pidctl)",
    ),
    (
        "pid_max",
        "the root pid namespace's pid_max for the bench, from 301 to 4194304 (default 4194304, as systemd sets it; 32768 for pidctl)",
    ),
    ("ops", "a soak length from 1 to 1000000000000 operations"),
    (
        "seed",
        "a seed from 0 to 18446744073709551615 for the soak's operations (default 1) and threadspawn's round order (default from the clock, printed)",
    ),
    (
        "faults",
        "off, or 1/N: each allocation fails with probability 1/N, N from 1 to 1000000",
    ),
    (
        "placement",
        "same (each new thread on its creator's CPU, as will-it-scale binds its workers: the default) or spread (on another CPU, one without a worker if any, as an unbound thread)",
    ),
    (
        "live",
        "bench=pidalloc's live-pid counts: a comma-separated list of 1 to 8 counts, each 0 to 4000000 (default 0,1000,100000,1000000)",
    ),
    (
        "retranslate",
        "on (the default under TCG: every threadspawn round first has QEMU drop its translation of the kernel's code, which the round's versions then translate again in their random order) or off",
    ),
    (
        "max_steal",
        "a host steal percentage from 0 to 100 above which a sample is run again, at most twice (default 20; 100 never re-runs)",
    ),
];
