//! Generic structures the subsystems share (Linux's `lib/`): the IDR, the
//! intrusive lists (`hlist`, `list_head`), errno values and fault
//! injection.

pub(crate) mod aligned;
pub(crate) mod errno;
pub(crate) mod fault_inject;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod hlist;
pub(crate) mod idr;
pub(crate) mod list;
pub(crate) mod lockctx;
