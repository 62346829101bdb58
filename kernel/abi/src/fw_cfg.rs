//! The fw_cfg files the runner hands the kernel (`-fw_cfg name=...,file=...`)
//! and the largest size the kernel reads of each.

/// The run-time parameters: whitespace-separated `KEY=VALUE` words.
pub const CMDLINE_FILE: &str = "opt/pidlab/cmdline";

/// Largest command line the kernel accepts, in bytes. It is read into a
/// static buffer before the heap exists (one of its keys sizes the heap).
pub const CMDLINE_MAX: usize = 4096;

/// A pidctl script (`--script FILE`, `bench=script`).
pub const SCRIPT_FILE: &str = "opt/pidlab/script";

/// Largest pidctl script the kernel accepts, in bytes.
pub const SCRIPT_MAX: usize = 1 << 20;
