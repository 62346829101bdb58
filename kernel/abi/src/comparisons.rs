//! The comparisons threadspawn reports (its `threadspawn_linux` rows, by
//! `change`), which the runner reads back across boots: each change as
//! the ratio of the version with it to the version without.

/// One comparison: `with / without`, reported under `change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub change: &'static str,
    /// The strategy (version) with the change.
    pub with: &'static str,
    /// The strategy it is compared against.
    pub without: &'static str,
}

/// Linux's comparisons, each change against the kernel it was merged into,
/// then the lock-free prototype against the kernel it would go into.
pub const COMPARISONS: [Comparison; 4] = [
    Comparison {
        change: "exit",
        with: "exit-deferred",
        without: "stock",
    },
    Comparison {
        change: "pidmap",
        with: "both",
        without: "exit-deferred",
    },
    Comparison {
        change: "pidfs",
        with: "v7.0",
        without: "both",
    },
    // Not a Linux change (printed only when `lockless` ran).
    Comparison {
        change: "lockless",
        with: "lockless",
        without: "v7.0",
    },
];
