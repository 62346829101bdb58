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

extern crate alloc;

#[macro_use]
pub mod console;
pub mod bench;
pub mod cmdline;
pub mod klib;
pub mod mm;
pub mod pid;
pub mod pidctl;
pub mod platform;
pub mod random;
pub mod rcu;
pub mod selftest;
pub mod strategy;
pub mod sync;
pub mod task;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
mod boot;

#[cfg(target_os = "none")]
pub use boot::{BOOTLOADER_CONFIG, kernel_main};

/// Most CPUs the kernel supports (also the host simulation's limit).
pub const MAX_CPUS: usize = 64;

/// Version string printed in the boot banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
