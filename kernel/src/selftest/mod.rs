//! In-kernel tests: the cases `test=` selects, the pid soak, and the
//! after-run invariant check.

#[cfg(target_os = "none")]
mod cases;
#[cfg(target_os = "none")]
pub(crate) mod invariants;
#[cfg(target_os = "none")]
mod lockctx;
#[cfg(target_os = "none")]
mod locks;
#[cfg(target_os = "none")]
mod nohz;
pub(crate) mod pid_soak;
#[cfg(target_os = "none")]
mod pidns;
#[cfg(target_os = "none")]
mod procs;
#[cfg(target_os = "none")]
mod profile;
#[cfg(target_os = "none")]
mod rcu;
#[cfg(target_os = "none")]
mod threads;
#[cfg(target_os = "none")]
mod wait;

#[cfg(target_os = "none")]
pub(crate) use cases::{run, validate};
