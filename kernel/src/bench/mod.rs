//! Benchmarks the kernel runs after boot (`bench=...`), and the statistics
//! they report with.

pub mod locks;
pub mod pidalloc;
pub mod placement;
#[cfg(target_os = "none")]
pub mod soak;
pub mod stats;
pub(crate) mod steal;
#[cfg(target_os = "none")]
pub mod threadspawn;
