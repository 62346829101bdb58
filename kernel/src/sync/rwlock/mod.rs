//! The reader-writer spinlock behind `tasklist_lock` (Linux's qrwlock,
//! `kernel/locking/qrwlock.c`, with a ticket lock as its wait queue).
//!
//! Readers take it from any context (interrupts included) and do not
//! starve writers; writers hold it with IRQs off. [`Qrw`] is the protocol,
//! generic over its atomic word and wait-queue lock so loom checks the code
//! the kernel runs; [`RawRwLockIrq`] wraps it with the IRQ discipline, the
//! lock debugging and lockstat, and [`RwLockIrq`] is the `lock_api` type
//! the kernel uses.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use super::choice::DynSpin;
use super::debug::{Holder, HolderCpu};
use super::irq::{self, Irq};
use super::lockstat::{self, HoldStart, LockKey, Mode};
use super::raw::{Bounded, ConstInit, SpinProtocol, SpinWait};
use super::word::AtomicWord;
use crate::platform;

/// Writer byte value while a writer holds the lock (`_QW_LOCKED`).
const QW_LOCKED: u32 = 0xff;
/// A writer is waiting (`_QW_WAITING`).
const QW_WAITING: u32 = 0x100;
/// Writer held or waiting (`_QW_WMASK`).
const QW_WMASK: u32 = 0x1ff;
/// One reader (`_QR_BIAS`).
const QR_BIAS: u32 = 0x200;

/// The qrwlock protocol, generic over the atomic word and the wait-queue
/// lock so `loom` checks the code the kernel runs. The slow paths report
/// each wait round to a [`SpinWait`] (the kernel's watchdog).
///
/// One count word: the low byte is the writer (`0xff` when a writer holds
/// the lock), bit 8 says a writer is waiting, and the bits above count
/// readers (in units of `QR_BIAS`). A spinlock, `wait_lock`, queues the
/// slow paths; it runs the algorithm `lock=` chose, like every spinlock.
///
/// - `read_lock` adds a reader bias; if no writer holds or waits, that's
///   all. Otherwise a task-context reader takes its bias back, queues on
///   `wait_lock` (behind the waiting writer, which holds `wait_lock` while
///   it waits: so writers are not starved), re-adds its bias and waits for
///   the writer byte to clear. A reader in interrupt context keeps its bias
///   and waits only while a writer *holds* the lock, never for a writer that
///   is merely waiting: that writer waits for this reader's bias to go, so
///   queueing behind it would deadlock an interrupt that hit a reader on its
///   CPU (or a reader that a waiting writer elsewhere is waiting out).
/// - `write_lock` swings the word from 0 to locked; otherwise it queues on
///   `wait_lock`, sets the waiting bit (which turns new task readers away)
///   and waits until only that bit is left, then swings it to locked.
/// - `read_unlock` removes a bias (Release); `write_unlock` removes the
///   writer byte (Release), leaving reader biases and the waiting bit.
pub(crate) struct Qrw<A = AtomicU32, W = DynSpin> {
    cnts: A,
    wait_lock: W,
}

impl Qrw {
    /// An unlocked lock.
    pub(crate) const fn new() -> Self {
        Qrw {
            cnts: AtomicU32::new(0),
            wait_lock: DynSpin::UNLOCKED,
        }
    }
}

#[cfg(all(test, loom))]
impl<A: AtomicWord> Qrw<A, super::ticket::Tickets<A>> {
    /// An unlocked lock over any [`AtomicWord`], queueing on a ticket lock
    /// (loom models).
    pub(crate) fn with_words() -> Self {
        Qrw {
            cnts: A::with_value(0),
            wait_lock: super::ticket::Tickets::with_words(),
        }
    }
}

impl<A: AtomicWord, W: SpinProtocol> Qrw<A, W> {
    /// The fast path of `queued_read_lock()`: true if the lock is ours.
    /// On false the bias is still added; [`read_lock_slow`](Self::read_lock_slow)
    /// must follow.
    #[inline(always)]
    pub(crate) fn read_lock_fast(&self) -> bool {
        self.cnts.fetch_add(QR_BIAS, Ordering::Acquire) & QW_WMASK == 0
    }

    /// Waits until no writer holds the lock (Acquire on the final read).
    #[inline(always)]
    fn wait_writer_gone(&self, wait: &mut impl SpinWait) {
        while self.cnts.load(Ordering::Acquire) & QW_LOCKED != 0 {
            A::relax();
            wait.round();
        }
    }

    /// `queued_read_lock_slowpath()`, entered with this reader's bias added.
    pub(crate) fn read_lock_slow(&self, in_interrupt: bool, wait: &mut impl SpinWait) {
        if in_interrupt {
            // Keep the bias (it holds off a waiting writer) and wait only
            // for a writer that holds the lock.
            self.wait_writer_gone(wait);
            return;
        }
        self.cnts.fetch_sub(QR_BIAS, Ordering::Relaxed);
        self.wait_lock.lock(wait);
        self.cnts.fetch_add(QR_BIAS, Ordering::Relaxed);
        self.wait_writer_gone(wait);
        // Let the next queued reader or writer in; readers behind us go
        // straight through while we hold the read side.
        self.wait_lock.unlock();
    }

    /// `queued_read_lock()` in one call (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn read_lock(&self, in_interrupt: bool) {
        if !self.read_lock_fast() {
            self.read_lock_slow(in_interrupt, &mut ());
        }
    }

    /// `queued_read_trylock()`.
    pub(crate) fn read_trylock(&self) -> bool {
        if self.cnts.load(Ordering::Relaxed) & QW_WMASK == 0 {
            if self.cnts.fetch_add(QR_BIAS, Ordering::Acquire) & QW_WMASK == 0 {
                return true;
            }
            self.cnts.fetch_sub(QR_BIAS, Ordering::Relaxed);
        }
        false
    }

    /// `queued_read_unlock()`.
    #[inline(always)]
    pub(crate) fn read_unlock(&self) {
        self.cnts.fetch_sub(QR_BIAS, Ordering::Release);
    }

    /// The fast path of `queued_write_lock()`.
    #[inline(always)]
    pub(crate) fn write_trylock(&self) -> bool {
        self.cnts
            .compare_exchange(0, QW_LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// `queued_write_lock_slowpath()`.
    pub(crate) fn write_lock_slow(&self, wait: &mut impl SpinWait) {
        self.wait_lock.lock(wait);
        if !self.write_trylock() {
            // Turn new task readers away, then wait for the readers in.
            self.cnts.fetch_or(QW_WAITING, Ordering::Relaxed);
            loop {
                while self.cnts.load(Ordering::Relaxed) != QW_WAITING {
                    A::relax();
                    wait.round();
                }
                if self
                    .cnts
                    .compare_exchange(QW_WAITING, QW_LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
            }
        }
        self.wait_lock.unlock();
    }

    /// `queued_write_lock()` in one call (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn write_lock(&self) {
        if !self.write_trylock() {
            self.write_lock_slow(&mut ());
        }
    }

    /// `queued_write_unlock()`: clears the writer byte only.
    #[inline(always)]
    pub(crate) fn write_unlock(&self) {
        self.cnts.fetch_sub(QW_LOCKED, Ordering::Release);
    }

    /// Readers now holding or trying to take the lock.
    pub(crate) fn readers(&self) -> u32 {
        self.cnts.load(Ordering::Relaxed) / QR_BIAS
    }

    /// Whether a writer holds the lock.
    pub(crate) fn is_write_locked(&self) -> bool {
        self.cnts.load(Ordering::Relaxed) & QW_LOCKED != 0
    }

    /// Whether a writer waits for the readers to leave.
    pub(crate) fn writer_waiting(&self) -> bool {
        self.cnts.load(Ordering::Relaxed) & QW_WAITING != 0
    }

    /// Whether anyone holds the lock (a reader bias may also be a reader on
    /// its way in or out).
    pub(crate) fn is_locked(&self) -> bool {
        self.cnts.load(Ordering::Relaxed) & !QW_WAITING != 0
    }
}

/// `rwlock_t` with Linux's discipline for `tasklist_lock`: readers with
/// `read_lock` (any context), writers with `write_lock_irq`.
///
/// The IRQ discipline is in the type: the exclusive side is
/// `write_lock_irq` (the [`Irq`] discipline of [`super::irq`], checks
/// included: IRQs off for the whole write hold, so an interrupt reader on
/// this CPU cannot spin on our own write lock), the shared side is plain
/// `read_lock` (IRQs untouched, callable in interrupt context). There is no
/// way to write-lock it with IRQs on.
pub(crate) struct RawRwLockIrq {
    qrw: Qrw,
    writer: HolderCpu,
    key: LockKey,
}

/// Guard state of a read hold: lockstat's hold start, `!Send`.
pub(crate) struct ReadHeld {
    hold_start: HoldStart,
    _not_send: PhantomData<*const ()>,
}

/// Guard state of a `write_lock_irq` hold; releasing it re-enables IRQs.
pub(crate) struct WriteHeldIrq {
    hold_start: HoldStart,
    _not_send: PhantomData<*const ()>,
}

impl RawRwLockIrq {
    /// An unlocked lock called `name`.
    pub(crate) const fn named(name: &'static str) -> Self {
        RawRwLockIrq {
            qrw: Qrw::new(),
            writer: HolderCpu::new(),
            key: LockKey::new(name),
        }
    }

    /// Whether a writer is waiting for readers to leave (tests, diagnostics).
    pub(crate) fn writer_waiting(&self) -> bool {
        self.qrw.writer_waiting()
    }

    fn holder(&self) -> Holder {
        if self.qrw.is_write_locked() {
            self.writer.get()
        } else {
            Holder::Readers(self.qrw.readers())
        }
    }

    #[cold]
    #[inline(never)]
    fn read_lock_slow(&self) {
        self.writer.check_recursion(self.key.name());
        let mut wait = Bounded::start(self.key.name(), || self.holder());
        self.qrw.read_lock_slow(platform::in_interrupt(), &mut wait);
        lockstat::contended(&self.key, Mode::Shared, wait.elapsed());
    }

    #[cold]
    #[inline(never)]
    fn write_lock_slow(&self) {
        self.writer.check_recursion(self.key.name());
        let mut wait = Bounded::start(self.key.name(), || self.holder());
        self.qrw.write_lock_slow(&mut wait);
        lockstat::contended(&self.key, Mode::Exclusive, wait.elapsed());
    }

    #[inline(always)]
    fn read_acquired(&self) -> ReadHeld {
        ReadHeld {
            hold_start: lockstat::acquired(&self.key, Mode::Shared),
            _not_send: PhantomData,
        }
    }

    #[inline(always)]
    fn write_acquired(&self) -> WriteHeldIrq {
        self.writer.set();
        WriteHeldIrq {
            hold_start: lockstat::acquired(&self.key, Mode::Exclusive),
            _not_send: PhantomData,
        }
    }
}

// SAFETY: the qrwlock protocol admits either any number of readers (bias
// added while the writer byte is clear) or one writer (the word swung from
// 0 or WAITING to LOCKED by compare-exchange), never both; acquisitions are
// Acquire and releases Release. Debug panics happen before acquiring.
unsafe impl lock_api::RawRwLock for RawRwLockIrq {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawRwLockIrq::named("unnamed");
    type SharedGuard = ReadHeld;
    type ExclusiveGuard = WriteHeldIrq;

    /// `read_lock()`.
    #[inline]
    fn lock_shared(&self) -> ReadHeld {
        if !self.qrw.read_lock_fast() {
            self.read_lock_slow();
        }
        self.read_acquired()
    }

    /// `read_trylock()`.
    #[inline]
    fn try_lock_shared(&self) -> Option<ReadHeld> {
        self.qrw.read_trylock().then(|| self.read_acquired())
    }

    /// `read_unlock()`.
    #[inline]
    unsafe fn unlock_shared(&self, held: ReadHeld) {
        lockstat::released(&self.key, Mode::Shared, held.hold_start);
        self.qrw.read_unlock();
    }

    /// `write_lock_irq()`.
    #[inline]
    fn lock_exclusive(&self) -> WriteHeldIrq {
        irq::enter::<Irq>(self.key.name(), || {
            self.writer.check_recursion(self.key.name())
        });
        if !self.qrw.write_trylock() {
            self.write_lock_slow();
        }
        self.write_acquired()
    }

    /// `write_trylock()` with IRQs disabled on success.
    #[inline]
    fn try_lock_exclusive(&self) -> Option<WriteHeldIrq> {
        irq::enter::<Irq>(self.key.name(), || {
            self.writer.check_recursion(self.key.name())
        });
        if self.qrw.write_trylock() {
            Some(self.write_acquired())
        } else {
            irq::exit::<Irq>((), true, self.key.name());
            None
        }
    }

    /// `write_unlock_irq()`.
    #[inline]
    unsafe fn unlock_exclusive(&self, held: WriteHeldIrq) {
        let correct = irq::held_correctly::<Irq>();
        lockstat::released(&self.key, Mode::Exclusive, held.hold_start);
        self.writer.clear();
        self.qrw.write_unlock();
        irq::exit::<Irq>((), correct, self.key.name());
    }

    fn is_locked(&self) -> bool {
        self.qrw.is_locked()
    }

    fn is_locked_exclusive(&self) -> bool {
        self.qrw.is_write_locked()
    }
}

/// A reader-writer spinlock: `read()` is `read_lock`, `write()` is
/// `write_lock_irq`.
pub(crate) type RwLockIrq<T> = lock_api::RwLock<RawRwLockIrq, T>;
/// A held `read_lock`.
pub(crate) type RwLockIrqReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLockIrq, T>;
/// A held `write_lock_irq`; dropping it is `write_unlock_irq`.
pub(crate) type RwLockIrqWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLockIrq, T>;

/// A named [`RwLockIrq`] (`DEFINE_RWLOCK`).
pub(crate) const fn named_rwlock_irq<T>(name: &'static str, value: T) -> RwLockIrq<T> {
    lock_api::RwLock::from_raw(RawRwLockIrq::named(name), value)
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
