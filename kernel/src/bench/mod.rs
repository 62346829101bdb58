//! Benchmarks the kernel runs after boot (`bench=...`), and the statistics
//! they report with.

pub(crate) mod locks;
pub(crate) mod pidalloc;
pub(crate) mod placement;
#[cfg(target_os = "none")]
pub(crate) mod soak;
pub(crate) mod stats;
pub(crate) mod steal;
#[cfg(target_os = "none")]
pub(crate) mod threadspawn;
