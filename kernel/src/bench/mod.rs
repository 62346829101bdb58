//! Benchmarks the kernel runs after boot (`bench=...`), and the statistics
//! they report with.

pub(crate) mod locks;
pub(crate) mod pidalloc;
pub(crate) mod soak;
pub(crate) mod stats;
pub(crate) mod steal;
pub(crate) mod threadspawn;

use pidlab_abi::Accel;

/// The accelerator's name for reports: the runner's `accel=`, or
/// `unknown` when the kernel was booted some other way.
pub(crate) fn accel_name(accel: Option<Accel>) -> &'static str {
    accel.map_or("unknown", Accel::name)
}
