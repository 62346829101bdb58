//! `bench=soak`: the run to trust before trusting the numbers. Every CPU
//! runs a worker process that spawns, exits and reaps as fast as it can,
//! with fault injection at every allocation site, and checks that each
//! injected failure comes back as the errno Linux gives for that site; at
//! the end the invariant check must find nothing leaked.
//!
//! Each worker has its own chain of pid namespaces four deep (an init
//! parked at each level) and draws each operation from an xorshift seeded
//! with `seed=` and its CPU: a process (random strategy pair and level,
//! sometimes a `set_tid`) spawned and reaped, a thread spawned and joined,
//! a `pid_max` change, or rarely its deepest namespace remade. With
//! `faults=1/N` every attempt at every site on its CPU fails with
//! probability 1/N. Per operation it compares its CPU's fault counters
//! before and after: a pid, task or stack fault must surface as ENOMEM, an
//! IDR fault is absorbed or surfaces as ENOMEM, and an ENOMEM with no fault
//! behind it, or an errno the operation cannot give, fails the run.

mod params;
#[cfg(target_os = "none")]
mod run;

pub(crate) use params::{SOAK_MAX_FAULT_ODDS, SOAK_MAX_OPS, SoakParams};
#[cfg(target_os = "none")]
pub(crate) use run::run;
