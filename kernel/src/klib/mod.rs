//! Generic structures the subsystems share (Linux's `lib/`): the IDR, the
//! intrusive hash list, errno values and fault injection.

pub mod aligned;
pub mod errno;
pub mod fault_inject;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod hlist;
pub mod idr;
pub mod lockctx;
