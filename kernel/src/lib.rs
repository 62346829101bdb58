//! pidlab: a small x86_64 kernel whose reason to exist is to run Linux's pid
//! allocation and task release paths on real SMP cores and measure them.
//!
//! The crate is split along one seam. Portable logic (command line, physical
//! frame bookkeeping, and later the locks' state machines, the IDR, pid
//! namespaces and task lifecycle) builds for the host as well, so `cargo test`
//! covers it there. Arch glue (boot, serial, GDT/IDT, fw_cfg, QEMU exit) lives
//! in [`arch`] and only builds for `x86_64-unknown-none`; portable code
//! reaches the machine only through [`platform`] (the arch seam), which the
//! host build simulates. On the host the library links `std` (the seam's
//! simulation uses threads); on the machine it is `no_std`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", feature(abi_x86_interrupt))]
// Items are `pub(crate)`, so the compiler finds dead ones: in the kernel
// build, which has everything (what only unit tests use is `#[cfg(test)]`).
// The host builds lack the kernel's half, so what only the kernel uses is
// dead there.
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

extern crate alloc;

#[macro_use]
pub(crate) mod console;
pub(crate) mod bench;
pub(crate) mod cmdline;
pub(crate) mod klib;
pub(crate) mod mm;
pub(crate) mod perf;
pub(crate) mod pid;
pub(crate) mod pidctl;
pub(crate) mod platform;
pub(crate) mod random;
pub(crate) mod rcu;
pub(crate) mod selftest;
pub(crate) mod strategy;
pub(crate) mod sync;
pub(crate) mod task;

#[cfg(target_os = "none")]
pub(crate) mod arch;
#[cfg(target_os = "none")]
mod boot;

#[cfg(target_os = "none")]
pub use boot::{BOOTLOADER_CONFIG, kernel_main};

/// Most CPUs the kernel supports (also the host simulation's limit).
pub(crate) const MAX_CPUS: usize = 64;

/// Version string printed in the boot banner.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
