//! The kernel versions the lab compares, as strategy pairs: which
//! `alloc_pid` and which `release_task` a spawned task goes through, and
//! how `pidmap_lock` treats interrupts. [`PAIRS`] is the only home of their
//! names; the command line, the tests and the benchmarks all look them up
//! here.
//!
//! | pair | kernel | `alloc_pid` | `release_task` | `pidmap_lock` | pidfs | cgroup unlink |
//! |---|---|---|---|---|---|---|
//! | `stock` | 6.14 | a lock trip per level + 1 | pids freed under `tasklist_lock` | `spin_lock_irq` / `irqsave` | under `pidmap_lock` | `cgroup_exit` |
//! | `pidmap-once` | 6.14 + the alloc change (never shipped) | one lock hold | as 6.14 | as 6.14 | as 6.14 | as 6.14 |
//! | `exit-deferred` | 6.15 | as 6.14 | pids freed after `tasklist_lock` | `spin_lock` | under `pidmap_lock` | `cgroup_exit` |
//! | `both` | 6.15 + the alloc change: the tree it was measured on | one lock hold | as 6.15 | `spin_lock` | under `pidmap_lock` | `cgroup_exit` |
//! | `v7.0` | 7.0 | one lock hold | as 6.15 | `spin_lock` | after the unlock, bucket locks | at the final switch |
//! | `lockless` | 7.0 + a lock-free `alloc_pid` (a prototype) | no lock | as 6.15 | not taken | as 7.0 | as 7.0 |
//!
//! [`PAIRS`] are the Linux versions; [`LOCKLESS`] runs on namespaces whose
//! id maps are lock-free (`PidNamespace::new_root_lockless`).

/// Which `alloc_pid` to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AllocPidStrategy {
    /// Before "pid: only take pidmap_lock once on alloc": a `pidmap_lock`
    /// round trip per namespace level, one more to publish.
    Stock,
    /// After it: one acquisition for every level and the publication (plus
    /// one per re-preload).
    SingleLock,
    /// No `pidmap_lock` at all: ids claimed with atomic bit operations in
    /// lock-free maps (`LfIdr`), `pid_allocated` one atomic word. Only in
    /// namespaces built lock-free.
    Lockless,
}

/// How `release_task` frees pids and feeds the entropy pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ReleaseStrategy {
    /// `free_pid` and `add_device_randomness` under `tasklist_lock`.
    Stock,
    /// Both after `write_unlock_irq(&tasklist_lock)` ("exit: perform
    /// randomness and pid work without tasklist_lock").
    Deferred,
}

/// How a kernel version takes `pidmap_lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PidmapIrq {
    /// Up to 6.14: with interrupts off (`spin_lock_irq` in `alloc_pid` and
    /// `disable_pid_allocation`, `spin_lock_irqsave` in `free_pid`).
    Off,
    /// 6.15 on ("pid: drop irq disablement around pidmap_lock"): plain
    /// `spin_lock`, since no interrupt handler takes it and `free_pid` no
    /// longer runs under `write_lock_irq(&tasklist_lock)`.
    Untouched,
}

/// Where pidfs numbers and links a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PidfsStrategy {
    /// 6.14 to 6.19: `pidfs_add_pid` in `alloc_pid`'s publication and
    /// `pidfs_remove_pid` in `free_pid`, both under `pidmap_lock`: a global
    /// inode counter and one rbtree.
    UnderPidmapLock,
    /// 7.0 ("pidfs: convert rb-tree to rhashtable", "pidfs: implement ino
    /// allocation without the pidmap lock"): after `pidmap_lock` is
    /// dropped, in a bucket-locked table, inode numbers from per-CPU
    /// batches.
    Hashed,
}

/// Where the cgroup core takes a dead task off its css_set's task list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CgroupUnlink {
    /// Up to 6.18: `cgroup_exit()` in `do_exit`, `spin_lock_irq`.
    DoExit,
    /// 6.19 on ("cgroup: Defer task cgroup unlink until after the task is
    /// done switching out"): `cgroup_task_dead()` from
    /// `finish_task_switch()`, `spin_lock_irqsave`.
    TaskDead,
}

/// One strategy pair: its name (as `strategies=` spells it), the kernel
/// version it stands for, and what that version does.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct StrategyPair {
    pub(crate) name: &'static str,
    /// The Linux version whose pid and exit paths these are.
    pub(crate) kernel: &'static str,
    pub(crate) alloc: AllocPidStrategy,
    pub(crate) release: ReleaseStrategy,
    pub(crate) pidmap_irq: PidmapIrq,
    pub(crate) pidfs: PidfsStrategy,
    pub(crate) cgroup_unlink: CgroupUnlink,
    /// Its position in [`StrategyPair::all`] (what a task stores).
    pub(crate) index: u8,
}

/// Every pair, in the benchmark's order; `PAIRS[0]` is the baseline.
pub(crate) static PAIRS: [StrategyPair; 5] = [
    StrategyPair {
        name: "stock",
        kernel: "6.14",
        alloc: AllocPidStrategy::Stock,
        release: ReleaseStrategy::Stock,
        pidmap_irq: PidmapIrq::Off,
        pidfs: PidfsStrategy::UnderPidmapLock,
        cgroup_unlink: CgroupUnlink::DoExit,
        index: 0,
    },
    StrategyPair {
        name: "pidmap-once",
        kernel: "6.14 + the alloc change (never shipped)",
        alloc: AllocPidStrategy::SingleLock,
        release: ReleaseStrategy::Stock,
        pidmap_irq: PidmapIrq::Off,
        pidfs: PidfsStrategy::UnderPidmapLock,
        cgroup_unlink: CgroupUnlink::DoExit,
        index: 1,
    },
    StrategyPair {
        name: "exit-deferred",
        kernel: "6.15",
        alloc: AllocPidStrategy::Stock,
        release: ReleaseStrategy::Deferred,
        pidmap_irq: PidmapIrq::Untouched,
        pidfs: PidfsStrategy::UnderPidmapLock,
        cgroup_unlink: CgroupUnlink::DoExit,
        index: 2,
    },
    StrategyPair {
        name: "both",
        kernel: "6.15 + the alloc change (the tree it was measured on)",
        alloc: AllocPidStrategy::SingleLock,
        release: ReleaseStrategy::Deferred,
        pidmap_irq: PidmapIrq::Untouched,
        pidfs: PidfsStrategy::UnderPidmapLock,
        cgroup_unlink: CgroupUnlink::DoExit,
        index: 3,
    },
    StrategyPair {
        name: "v7.0",
        kernel: "7.0",
        alloc: AllocPidStrategy::SingleLock,
        release: ReleaseStrategy::Deferred,
        pidmap_irq: PidmapIrq::Untouched,
        pidfs: PidfsStrategy::Hashed,
        cgroup_unlink: CgroupUnlink::TaskDead,
        index: 4,
    },
];

/// Linux 7.0 plus a lock-free `alloc_pid` and `free_pid`: what the alloc
/// change's author asked for next. Not a Linux version.
pub(crate) static LOCKLESS: StrategyPair = StrategyPair {
    name: "lockless",
    kernel: "7.0 + a lock-free alloc_pid (prototype, not in Linux)",
    alloc: AllocPidStrategy::Lockless,
    release: ReleaseStrategy::Deferred,
    pidmap_irq: PidmapIrq::Untouched,
    pidfs: PidfsStrategy::Hashed,
    cgroup_unlink: CgroupUnlink::TaskDead,
    index: 5,
};

/// Calls `$f::<V>(args)` for the pair whose index is `$index`: the hot
/// paths (`copy_process`, `alloc_pid`, `do_exit`, `release_task`,
/// `free_pid`) are generic over the version's index, so each version's is
/// compiled on its own, with its strategy's fields as constants, as each
/// kernel compiles its own. One body for all versions, branching at run
/// time, would share its register allocation, spills and inlining between
/// them, and make one version pay for another's code.
///
/// Where one function ends and the next begins is Linux's, not the
/// compiler's: `copy_process` (fork.c), `alloc_pid` and `free_pid`
/// (pid.c), `do_exit` and `release_task` (exit.c) are each
/// `#[inline(never)]`, as separate compilation units keep them apart in
/// Linux. Left to the compiler, the answer changed with the build: with
/// one codegen unit every version's `copy_process` was inlined into the
/// dispatcher and `alloc_pid` was not, and at one worker 7.0 read 4.7-4.9%
/// above 6.14 and 6.15 2.1-3.5% below it (three boots); with these
/// boundaries they read within 1.6% and 1.4% (three boots).
macro_rules! per_version {
    ($index:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $index {
            0 => $f::<0>($($arg),*),
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            _ => $f::<5>($($arg),*),
        }
    };
}
pub(crate) use per_version;

const _: () = assert!(NR_PAIRS == 6, "per_version! names every pair's index");

impl StrategyPair {
    /// [`at`](Self::at) index `V`, evaluated at compile time: a constant in
    /// code generic over `V`.
    #[inline(always)]
    pub(crate) fn of<const V: u8>() -> &'static StrategyPair {
        const { Self::at(V as usize) }
    }
}

/// The versions a benchmark runs unless told otherwise: the kernels Linux
/// shipped or measured (`pidmap-once`, never shipped, by name only).
pub(crate) static DEFAULT_VERSIONS: [&StrategyPair; 4] =
    [&PAIRS[0], &PAIRS[2], &PAIRS[3], &PAIRS[4]];

/// How many pairs there are: the Linux versions and [`LOCKLESS`].
pub(crate) const NR_PAIRS: usize = PAIRS.len() + 1;

impl StrategyPair {
    /// The baseline every ratio is taken against.
    pub(crate) fn stock() -> &'static StrategyPair {
        &PAIRS[0]
    }

    /// Every pair: the Linux versions, then [`LOCKLESS`].
    pub(crate) fn all() -> impl Iterator<Item = &'static StrategyPair> {
        PAIRS.iter().chain(core::iter::once(&LOCKLESS))
    }

    /// The pair called `name`.
    pub(crate) fn by_name(name: &str) -> Option<&'static StrategyPair> {
        Self::all().find(|p| p.name == name)
    }

    /// The pair at `index` in [`all`](Self::all).
    pub(crate) const fn at(index: usize) -> &'static StrategyPair {
        if index < PAIRS.len() {
            &PAIRS[index]
        } else {
            &LOCKLESS
        }
    }

    /// Whether its `alloc_pid` needs lock-free namespaces.
    pub(crate) fn lockless(&self) -> bool {
        self.alloc == AllocPidStrategy::Lockless
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, p) in StrategyPair::all().enumerate() {
            assert!(core::ptr::eq(StrategyPair::by_name(p.name).unwrap(), p));
            assert_eq!(usize::from(p.index), i);
            assert!(core::ptr::eq(StrategyPair::at(i), p));
        }
        assert_eq!(StrategyPair::all().count(), NR_PAIRS);
        // The constant each version's generic hot path compiles with.
        let of = [
            StrategyPair::of::<0>(),
            StrategyPair::of::<1>(),
            StrategyPair::of::<2>(),
            StrategyPair::of::<3>(),
            StrategyPair::of::<4>(),
            StrategyPair::of::<5>(),
        ];
        for (i, p) in of.into_iter().enumerate() {
            assert!(core::ptr::eq(p, StrategyPair::at(i)), "{i}");
        }
        // per_version! calls the instance of each pair's own index.
        fn index_of<const V: u8>() -> usize {
            StrategyPair::of::<V>().index.into()
        }
        for p in StrategyPair::all() {
            assert_eq!(per_version!(p.index, index_of()), usize::from(p.index));
        }
        assert!(StrategyPair::by_name("single-lock").is_none());
    }

    #[test]
    fn irqs_stay_on_from_the_kernel_that_moved_free_pid_out() {
        // 6.15 dropped the IRQ disablement together with the exit change:
        // free_pid no longer ran under write_lock_irq(&tasklist_lock).
        for p in StrategyPair::all() {
            assert_eq!(
                p.pidmap_irq == PidmapIrq::Untouched,
                p.release == ReleaseStrategy::Deferred,
                "{}",
                p.name
            );
        }
    }
}
