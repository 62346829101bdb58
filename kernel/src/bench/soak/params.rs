//! The soak's parameters (the command line parses into them).

/// `bench=soak`'s parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SoakParams {
    /// Operations in all, over every CPU.
    pub(crate) ops: u64,
    /// Seeds every CPU's choices and fault draws.
    pub(crate) seed: u64,
    /// Fault injection odds: each allocation at every site fails with
    /// probability 1/n; `None`: off.
    pub(crate) faults: Option<u32>,
}

/// Most operations `ops=` takes.
pub(crate) const SOAK_MAX_OPS: u64 = 1_000_000_000_000;
/// Largest n in `faults=1/n`.
pub(crate) const SOAK_MAX_FAULT_ODDS: u32 = 1_000_000;

impl Default for SoakParams {
    fn default() -> Self {
        SoakParams {
            ops: 10_000_000,
            seed: 1,
            faults: Some(1000),
        }
    }
}
