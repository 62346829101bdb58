//! Locks: the subject of study as much as the pid code they protect.
//!
//! - [`ticket`]: the FIFO ticket spinlock behind `pidmap_lock` and the other
//!   spinlocks, as a `lock_api::RawMutex`, in three disciplines carried by
//!   the type: [`SpinLock`] (never taken from interrupt context),
//!   [`SpinLockIrq`] (`spin_lock_irq`: the caller knows IRQs are on) and
//!   [`SpinLockIrqSave`] (`spin_lock_irqsave`).

pub mod ticket;

pub use ticket::{
    RawTicketLock, RawTicketLockIrq, RawTicketLockIrqSave, SpinLock, SpinLockIrq, SpinLockIrqSave,
};
