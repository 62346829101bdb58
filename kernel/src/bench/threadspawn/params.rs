//! threadspawn's parameters (the command line parses into them).

use arrayvec::ArrayVec;

use super::placement::Placement;
use crate::strategy::{DEFAULT_VERSIONS, NR_PAIRS, StrategyPair};

/// Most entries in a `workers=` list.
pub(crate) const MAX_WORKER_COUNTS: usize = 8;

/// The threadspawn benchmark's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThreadspawnParams {
    /// Worker counts; `None`: 1, 2, 4, 8 up to the CPUs online.
    pub(crate) workers: Option<ArrayVec<u8, MAX_WORKER_COUNTS>>,
    pub(crate) samples: u32,
    pub(crate) sample_ms: u32,
    pub(crate) ns_depth: u32,
    /// The strategy pairs to run, in the order given.
    pub(crate) strategies: ArrayVec<&'static StrategyPair, NR_PAIRS>,
    pub(crate) lockstat: bool,
    /// Where new threads run.
    pub(crate) placement: Placement,
    /// Steal percentage above which a sample is run again.
    pub(crate) max_steal: u32,
    /// Seeds the rounds' random order (`seed=`); `None`: from the clock,
    /// printed so the run can be replayed.
    pub(crate) seed: Option<u64>,
    /// Whether each round first has QEMU drop its translation of the
    /// kernel's code (`retranslate=`); `None`: on under TCG, off under KVM.
    pub(crate) retranslate: Option<bool>,
}

impl Default for ThreadspawnParams {
    fn default() -> Self {
        ThreadspawnParams {
            workers: None,
            samples: 60,
            sample_ms: 200,
            ns_depth: 0,
            strategies: DEFAULT_VERSIONS.iter().copied().collect(),
            lockstat: false,
            placement: Placement::Same,
            max_steal: 20,
            seed: None,
            retranslate: None,
        }
    }
}
