//! pidctl: a scriptable console to drive the task and pid code by hand.

#[cfg(target_os = "none")]
pub(crate) mod exec;
pub(crate) mod parse;
