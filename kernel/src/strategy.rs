//! The strategy pairs the lab compares: which `alloc_pid` and which
//! `release_task` a spawned task goes through. [`PAIRS`] is the only home of
//! their names; the command line, the tests and the benchmarks all look
//! them up here.

/// Which `alloc_pid` to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocPidStrategy {
    /// Before "pid: only take pidmap_lock once on alloc": a `pidmap_lock`
    /// round trip per namespace level, one more to publish.
    Stock,
    /// After it: one acquisition for every level and the publication (plus
    /// one per re-preload).
    SingleLock,
}

impl AllocPidStrategy {
    /// Both, Stock first.
    pub const ALL: [AllocPidStrategy; 2] = [AllocPidStrategy::Stock, AllocPidStrategy::SingleLock];
}

/// How `release_task` frees pids and feeds the entropy pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseStrategy {
    /// `free_pid` and `add_device_randomness` under `tasklist_lock`.
    Stock,
    /// Both after `write_unlock_irq(&tasklist_lock)` ("exit: perform
    /// randomness and pid work without tasklist_lock").
    Deferred,
}

/// One strategy pair: its name (as `strategies=` spells it) and the two
/// strategies.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StrategyPair {
    pub name: &'static str,
    pub alloc: AllocPidStrategy,
    pub release: ReleaseStrategy,
}

/// Every pair, in the benchmark's order; `PAIRS[0]` is the baseline.
pub static PAIRS: [StrategyPair; 4] = [
    StrategyPair {
        name: "stock",
        alloc: AllocPidStrategy::Stock,
        release: ReleaseStrategy::Stock,
    },
    StrategyPair {
        name: "pidmap-once",
        alloc: AllocPidStrategy::SingleLock,
        release: ReleaseStrategy::Stock,
    },
    StrategyPair {
        name: "exit-deferred",
        alloc: AllocPidStrategy::Stock,
        release: ReleaseStrategy::Deferred,
    },
    StrategyPair {
        name: "both",
        alloc: AllocPidStrategy::SingleLock,
        release: ReleaseStrategy::Deferred,
    },
];

impl StrategyPair {
    /// The baseline every ratio is taken against.
    pub fn stock() -> &'static StrategyPair {
        &PAIRS[0]
    }

    /// The pair called `name`.
    pub fn by_name(name: &str) -> Option<&'static StrategyPair> {
        PAIRS.iter().find(|p| p.name == name)
    }

    /// The pair whose alloc side is `alloc` and release side stock (for
    /// benchmarks of `alloc_pid` alone).
    pub fn for_alloc(alloc: AllocPidStrategy) -> &'static StrategyPair {
        PAIRS
            .iter()
            .find(|p| p.alloc == alloc && p.release == ReleaseStrategy::Stock)
            .expect("every alloc strategy has a pair with the stock release")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in &PAIRS {
            assert!(core::ptr::eq(StrategyPair::by_name(p.name).unwrap(), p));
        }
        assert!(StrategyPair::by_name("single-lock").is_none());
        assert_eq!(
            StrategyPair::for_alloc(AllocPidStrategy::SingleLock).name,
            "pidmap-once"
        );
    }
}
