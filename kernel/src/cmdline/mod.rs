//! Run-time parameters: whitespace-separated `KEY=VALUE` words.
//!
//! The runner hands them to the kernel through QEMU's fw_cfg file
//! `opt/pidlab/cmdline`, so changing a parameter never needs a rebuild. Parsing
//! borrows from the raw text and allocates nothing: the heap size is one of
//! the keys, so the command line is read before the heap exists. Every
//! mistake (a word without `=`, an unknown key, a bad value, a key given
//! twice) is an error naming the key and what it accepts; the kernel prints it
//! and fails instead of guessing.

use core::fmt;

use arrayvec::ArrayVec;
pub(crate) use pidlab_abi::Accel;

mod keys;
pub(crate) use keys::KEYS;

use crate::bench::soak::{SOAK_MAX_FAULT_ODDS, SOAK_MAX_OPS, SoakParams};
use crate::bench::threadspawn::ThreadspawnParams;
use crate::bench::threadspawn::placement::Placement;
use crate::perf::{PROFILE_HZ, ProfileParams};
use crate::pid::namespace::{PID_MAX_DEFAULT, PID_MAX_LIMIT, PID_MAX_MIN};
use crate::strategy::StrategyPair;
use crate::sync::choice::{LockAlgo, LockChoice};
use crate::sync::debug::DEFAULT_WAIT_BOUND_MS;

/// What the kernel runs once it has booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bench {
    /// Boot, report, exit with success.
    None,
    /// will-it-scale's threadspawn1 for every strategy pair (the default).
    Threadspawn,
    /// The lock microbenchmark (`sync::bench`): uncontended cost of every
    /// lock flavour and contended throughput at 1, 2, 4 and 8 CPUs.
    Locks,
    /// Single-CPU alloc_pid+free_pid cost against live pids.
    Pidalloc,
    /// pidctl: run the script the runner handed over (`--script FILE`).
    Script,
    /// pidctl: commands typed on the serial console.
    Shell,
    /// Spawn, exit and reap on every CPU with fault injection, then the
    /// invariant check: the run to trust before the numbers.
    Soak,
}

impl Bench {
    const ALL: &'static [(&'static str, Bench)] = &[
        ("none", Bench::None),
        ("threadspawn", Bench::Threadspawn),
        ("locks", Bench::Locks),
        ("pidalloc", Bench::Pidalloc),
        ("script", Bench::Script),
        ("shell", Bench::Shell),
        ("soak", Bench::Soak),
    ];

    /// The name used on the command line.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Size of the kernel heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeapSize {
    /// Three quarters of the largest usable memory region.
    Auto,
    /// Exactly this many bytes (rounded up to a page by the kernel).
    Bytes(u64),
}

/// Parsed command line. String fields borrow from the raw text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cmdline<'a> {
    /// The text as received, for the boot log.
    pub(crate) raw: &'a str,
    pub(crate) bench: Bench,
    pub(crate) heap: HeapSize,
    pub(crate) loglevel: log::LevelFilter,
    /// Comma-separated in-kernel test cases to run before the benchmark
    /// (validated against the kernel's list of cases by the caller).
    pub(crate) tests: &'a str,
    /// The QEMU accelerator, as reported by the runner (informational).
    pub(crate) accel: Option<Accel>,
    /// Local APIC timer interrupts per second on every CPU.
    pub(crate) timer_hz: u32,
    /// The bound on any lock wait, in milliseconds (the lock watchdog).
    pub(crate) lock_wait_ms: u64,
    /// The spinlock algorithm asked for (`lock=`).
    pub(crate) lock: LockChoice,
    /// The host's cores, as the runner saw them.
    pub(crate) host_cpus: Option<u32>,
    /// Soft-lockup bound: a CPU that passes no scheduling point this long
    /// fails the run (0: off).
    pub(crate) softlockup_ms: u32,
    /// Hard-lockup bound: a CPU that takes no timer tick this long fails
    /// the run (0: off).
    pub(crate) hardlockup_ms: u32,
    /// The kernel version pidctl's tasks run (`strategy=`).
    pub(crate) pidctl_version: &'static StrategyPair,
    pub(crate) threadspawn: ThreadspawnParams,
    pub(crate) soak: SoakParams,
    /// `bench=pidalloc`'s live-pid counts (`live=`); `None`: its default.
    pub(crate) pidalloc_live: Option<ArrayVec<u32, MAX_LIVE_COUNTS>>,
    /// The sampling profiler (`profile=`, `profile_hz=`).
    pub(crate) profile: ProfileParams,
    /// Whether idle CPUs stop their tick (`nohz=`, Linux's NO_HZ_IDLE).
    pub(crate) nohz: bool,
    /// The entries every CPU's QEMU software TLB is grown to at boot
    /// (`softtlb=`): `None` for the default (see [`Cmdline::softtlb`]),
    /// `Some(0)` for off.
    pub(crate) softtlb: Option<u32>,
    /// Live tasks parked in the root namespace before a benchmark
    /// (`root_pids=`); `None`: the default for the bench (see
    /// [`Cmdline::root_pids`]).
    pub(crate) root_pids: Option<u32>,
    /// The root namespace's `pid_max` for a benchmark (`pid_max=`); `None`:
    /// the bench's default.
    pub(crate) pid_max: Option<u32>,
}

/// The sizes `softtlb=` accepts: QEMU's smallest table up to 65536 (growing
/// to `n` reads `n` pages of RAM; the kernel checks at boot that they fit).
pub(crate) const SOFTTLB_ENTRIES: core::ops::RangeInclusive<u32> = 64..=65536;
/// The default under TCG.
pub(crate) const SOFTTLB_DEFAULT: u32 = 16384;

/// Live tasks a booted system has in its root namespace (systemd, its
/// services, kernel threads): what benchmarks run beside by default.
pub(crate) const DEFAULT_ROOT_PIDS: u32 = 300;
/// Most `root_pids=`.
pub(crate) const MAX_ROOT_PIDS: u32 = 100_000;

impl Cmdline<'_> {
    /// Whether the bench is pidctl's, whose expected answers (pid numbers,
    /// wraps at a small `pid_max`) assume a fresh root namespace.
    fn small_world(&self) -> bool {
        matches!(self.bench, Bench::Script | Bench::Shell | Bench::None)
    }

    /// The entries to grow every CPU's QEMU software TLB to, 0 for none:
    /// `softtlb=`, else 16384, or none under KVM (no software TLB).
    pub(crate) fn softtlb(&self) -> u32 {
        self.softtlb.unwrap_or(if self.accel == Some(Accel::Kvm) {
            0
        } else {
            SOFTTLB_DEFAULT
        })
    }

    /// The tasks to park in the root namespace: `root_pids=`, else 300
    /// (a booted system's), none for pidctl and `bench=none`.
    pub(crate) fn root_pids(&self) -> u32 {
        self.root_pids.unwrap_or(if self.small_world() {
            0
        } else {
            DEFAULT_ROOT_PIDS
        })
    }

    /// The root namespace's `pid_max`: `pid_max=`, else 4194304 (what
    /// systemd's 50-pid-max.conf sets on 64-bit), Linux's 32768 for
    /// pidctl and `bench=none`.
    pub(crate) fn pid_max(&self) -> u32 {
        self.pid_max.unwrap_or(if self.small_world() {
            PID_MAX_DEFAULT as u32
        } else {
            PID_MAX_LIMIT as u32
        })
    }
}

/// Most entries in a `live=` list.
pub(crate) const MAX_LIVE_COUNTS: usize = 8;
/// Most live pids `live=` takes (the root's ids stop at 4,194,304).
pub(crate) const MAX_LIVE_PIDS: u32 = 4_000_000;

impl Default for Cmdline<'_> {
    fn default() -> Self {
        Cmdline {
            raw: "",
            bench: Bench::Threadspawn,
            heap: HeapSize::Auto,
            loglevel: log::LevelFilter::Info,
            tests: "",
            accel: None,
            timer_hz: 1000,
            lock_wait_ms: DEFAULT_WAIT_BOUND_MS,
            lock: LockChoice::Auto,
            host_cpus: None,
            softlockup_ms: DEFAULT_SOFTLOCKUP_MS,
            hardlockup_ms: DEFAULT_HARDLOCKUP_MS,
            pidctl_version: StrategyPair::stock(),
            threadspawn: ThreadspawnParams::default(),
            soak: SoakParams::default(),
            pidalloc_live: None,
            profile: ProfileParams::default(),
            nohz: true,
            softtlb: None,
            root_pids: None,
            pid_max: None,
        }
    }
}

/// Default soft-lockup bound (Linux's: twice `watchdog_thresh`).
pub(crate) const DEFAULT_SOFTLOCKUP_MS: u32 = 20_000;
/// Default hard-lockup bound: past the lock wait bound, so a CPU spinning
/// for a lock with interrupts off is named by the lock watchdog first.
pub(crate) const DEFAULT_HARDLOCKUP_MS: u32 = 5_000;
/// The lockup bounds' range (besides 0, off).
const LOCKUP_MS: core::ops::RangeInclusive<u32> = 1000..=600_000;

/// Why a command line was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CmdlineError<'a> {
    /// A word that is not `KEY=VALUE`.
    NotKeyValue(&'a str),
    /// A key the kernel does not know.
    UnknownKey(&'a str),
    /// A known key with a value it does not accept.
    BadValue {
        key: &'a str,
        value: &'a str,
        accepts: &'static str,
    },
    /// The same key twice.
    Duplicate(&'a str),
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::NotKeyValue(word) => {
                write!(f, "`{word}` is not KEY=VALUE")
            }
            CmdlineError::UnknownKey(key) => {
                write!(f, "unknown key `{key}` (known keys:")?;
                for (k, _) in KEYS {
                    write!(f, " {k}")?;
                }
                write!(f, ")")
            }
            CmdlineError::BadValue {
                key,
                value,
                accepts,
            } => write!(f, "bad value `{value}` for `{key}`: it accepts {accepts}"),
            CmdlineError::Duplicate(key) => write!(f, "key `{key}` given more than once"),
        }
    }
}

/// Parses the command line. An empty line gives the defaults.
pub(crate) fn parse(raw: &str) -> Result<Cmdline<'_>, CmdlineError<'_>> {
    let mut cmd = Cmdline {
        raw,
        ..Cmdline::default()
    };
    let mut seen = [false; KEYS.len()];
    for word in raw.split_ascii_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or(CmdlineError::NotKeyValue(word))?;
        let index = KEYS
            .iter()
            .position(|(k, _)| *k == key)
            .ok_or(CmdlineError::UnknownKey(key))?;
        if core::mem::replace(&mut seen[index], true) {
            return Err(CmdlineError::Duplicate(key));
        }
        let bad = || CmdlineError::BadValue {
            key,
            value,
            accepts: KEYS[index].1,
        };
        match key {
            "bench" => {
                cmd.bench = Bench::ALL
                    .iter()
                    .find(|(n, _)| *n == value)
                    .map(|(_, b)| *b)
                    .ok_or_else(bad)?;
            }
            "heap" => {
                cmd.heap = if value == "auto" {
                    HeapSize::Auto
                } else {
                    match parse_size(value) {
                        Some(bytes) if bytes >= 1 << 20 => HeapSize::Bytes(bytes),
                        _ => return Err(bad()),
                    }
                };
            }
            "loglevel" => {
                cmd.loglevel = match value {
                    "off" => log::LevelFilter::Off,
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    "trace" => log::LevelFilter::Trace,
                    _ => return Err(bad()),
                };
            }
            "test" => {
                if value.is_empty() || value.split(',').any(str::is_empty) {
                    return Err(bad());
                }
                cmd.tests = value;
            }
            Accel::CMDLINE_KEY => {
                cmd.accel = Some(Accel::by_name(value).ok_or_else(bad)?);
            }
            "hz" => {
                cmd.timer_hz = match value.parse::<u32>() {
                    Ok(hz) if (10..=10_000).contains(&hz) => hz,
                    _ => return Err(bad()),
                };
            }
            "lock" => {
                cmd.lock = match value {
                    "auto" => LockChoice::Auto,
                    _ => LockChoice::Force(LockAlgo::by_name(value).ok_or_else(bad)?),
                };
            }
            "host_cpus" => {
                cmd.host_cpus = match value.parse::<u32>() {
                    Ok(n) if (1..=4096).contains(&n) => Some(n),
                    _ => return Err(bad()),
                };
            }
            "lockwait_ms" => {
                cmd.lock_wait_ms = match value.parse::<u64>() {
                    Ok(ms) if (10..=600_000).contains(&ms) => ms,
                    _ => return Err(bad()),
                };
            }
            "softlockup_ms" | "hardlockup_ms" => {
                let ms = match value.parse::<u32>() {
                    Ok(ms) if ms == 0 || LOCKUP_MS.contains(&ms) => ms,
                    _ => return Err(bad()),
                };
                if key == "softlockup_ms" {
                    cmd.softlockup_ms = ms;
                } else {
                    cmd.hardlockup_ms = ms;
                }
            }
            "workers" => {
                let mut list = ArrayVec::new();
                for item in value.split(',') {
                    let n = match item.parse::<u8>() {
                        Ok(n) if (1..=64).contains(&n) => n,
                        _ => return Err(bad()),
                    };
                    list.try_push(n).map_err(|_| bad())?;
                }
                cmd.threadspawn.workers = Some(list);
            }
            "samples" => {
                cmd.threadspawn.samples = match value.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(bad()),
                };
            }
            "sample_ms" => {
                cmd.threadspawn.sample_ms = match value.parse::<u32>() {
                    Ok(n) if (1..=60_000).contains(&n) => n,
                    _ => return Err(bad()),
                };
            }
            "ns_depth" => {
                cmd.threadspawn.ns_depth = match value.parse::<u32>() {
                    Ok(n) if n <= 31 => n,
                    _ => return Err(bad()),
                };
            }
            "strategy" => {
                cmd.pidctl_version = StrategyPair::by_name(value).ok_or_else(bad)?;
            }
            "strategies" => {
                let mut list = ArrayVec::new();
                for item in value.split(',') {
                    let pair = StrategyPair::by_name(item).ok_or_else(bad)?;
                    if list.contains(&pair) {
                        return Err(bad());
                    }
                    list.push(pair);
                }
                cmd.threadspawn.strategies = list;
            }
            "ops" => {
                cmd.soak.ops = match value.parse::<u64>() {
                    Ok(n) if (1..=SOAK_MAX_OPS).contains(&n) => n,
                    _ => return Err(bad()),
                };
            }
            "seed" => {
                let seed = value.parse::<u64>().map_err(|_| bad())?;
                cmd.soak.seed = seed;
                cmd.threadspawn.seed = Some(seed);
            }
            "faults" => {
                cmd.soak.faults = match value {
                    "off" => None,
                    _ => match value.strip_prefix("1/").map(str::parse::<u32>) {
                        Some(Ok(n)) if (1..=SOAK_MAX_FAULT_ODDS).contains(&n) => Some(n),
                        _ => return Err(bad()),
                    },
                };
            }
            "retranslate" => {
                cmd.threadspawn.retranslate = Some(match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad()),
                });
            }
            "lockstat" => {
                cmd.threadspawn.lockstat = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad()),
                };
            }
            "profile" => {
                cmd.profile.on = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad()),
                };
            }
            "nohz" => {
                cmd.nohz = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad()),
                };
            }
            "softtlb" => {
                cmd.softtlb = match value {
                    "off" => Some(0),
                    _ => match value.parse::<u32>() {
                        Ok(n) if n.is_power_of_two() && SOFTTLB_ENTRIES.contains(&n) => Some(n),
                        _ => return Err(bad()),
                    },
                };
            }
            "profile_hz" => {
                cmd.profile.hz = match value.parse::<u32>() {
                    Ok(n) if PROFILE_HZ.contains(&n) => n,
                    _ => return Err(bad()),
                };
            }
            "root_pids" => {
                cmd.root_pids = match value.parse::<u32>() {
                    Ok(n) if n <= MAX_ROOT_PIDS => Some(n),
                    _ => return Err(bad()),
                };
            }
            "pid_max" => {
                cmd.pid_max = match value.parse::<i32>() {
                    Ok(n) if (PID_MAX_MIN..=PID_MAX_LIMIT).contains(&n) => Some(n as u32),
                    _ => return Err(bad()),
                };
            }
            "max_steal" => {
                cmd.threadspawn.max_steal = match value.parse::<u32>() {
                    Ok(n) if n <= 100 => n,
                    _ => return Err(bad()),
                };
            }
            "live" => {
                let mut list = ArrayVec::new();
                for item in value.split(',') {
                    let n = match item.parse::<u32>() {
                        Ok(n) if n <= MAX_LIVE_PIDS => n,
                        _ => return Err(bad()),
                    };
                    list.try_push(n).map_err(|_| bad())?;
                }
                cmd.pidalloc_live = Some(list);
            }
            "placement" => {
                cmd.threadspawn.placement = Placement::by_name(value).ok_or_else(bad)?;
            }
            _ => unreachable!("every key in KEYS has a case"),
        }
    }
    Ok(cmd)
}

/// Parses `1234`, `64K`, `256M`, `1G` (binary multiples) into bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests;
