//! What the runner and the kernel must agree on, defined once.
//!
//! The runner (a host program) and the kernel (bare metal) meet only
//! through QEMU: fw_cfg files carry the run-time parameters and a pidctl
//! script in ([`fw_cfg`], [`Accel`]), the isa-debug-exit device carries the
//! verdict out ([`debug_exit`]), and the serial console carries the report,
//! whose failure lines the runner picks out ([`console`]) and whose
//! threadspawn comparisons it reads back across boots ([`comparisons`]).
//! Both sides read these items from here, so one side cannot drift from
//! the other. The
//! crate is `no_std` and has no dependencies: the kernel builds it for
//! `x86_64-unknown-none`.
#![cfg_attr(not(test), no_std)]

mod accel;
pub mod comparisons;
pub mod console;
pub mod debug_exit;
pub mod fw_cfg;

pub use accel::Accel;
