//! pidctl: a scriptable console to drive the task and pid code by hand.

pub mod parse;
