//! The paravirt ticket lock (Linux 3.12-4.1 guests, `kvm_lock_spinning`/
//! `kvm_unlock_kick`): a ticket lock whose waiters stop spinning after a
//! while and halt, so a host running more vCPUs than cores runs the
//! holder instead of them; the unlock kicks the halted waiter.
//!
//! [`PvTickets`] is the protocol, generic over its atomic word and over
//! [`PvCpu`] (what it needs from the machine) so loom checks the code the
//! kernel runs; [`KernelPv`] is the machine's side, with NMI kicks and the
//! timer sweep that bounds every halt.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::raw::{ConstInit, SpinProtocol, SpinWait};
use super::word::AtomicWord;
use crate::{MAX_CPUS, platform};

/// Ticket increment: bit 0 is the flag.
const INC: u32 = 2;
/// In `next`: a waiter may be halted, unlock must look at the records.
pub(super) const SLOWPATH: u32 = 1;
/// Spin rounds before the waiter next in line halts. Short: a halt costs
/// little under emulation, and a spinning vCPU takes a host core from the
/// holder (Linux's `SPIN_THRESHOLD`, 32768, was set for KVM, where a halt
/// is a VM exit).
pub(crate) const SPIN_THRESHOLD: u32 = 32;
/// Spin rounds before a waiter further back halts: none, it is kicked when
/// it becomes next.
pub(crate) const SPIN_THRESHOLD_QUEUED: u32 = 0;

/// One CPU's wait record: the lock it is halting on (its id, 0: none) and
/// the ticket it waits for.
#[repr(align(64))]
pub(crate) struct PvWaiter<A = AtomicU32> {
    lock: A,
    want: A,
}

impl<A: AtomicWord> PvWaiter<A> {
    /// An empty record over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        PvWaiter {
            lock: A::with_value(0),
            want: A::with_value(0),
        }
    }
}

/// What the protocol needs from the machine; the kernel's is [`KernelPv`].
pub(crate) trait PvCpu<A> {
    /// This CPU's index.
    fn cpu(&self) -> usize;
    /// CPU `cpu`'s wait record.
    fn waiter(&self, cpu: usize) -> &PvWaiter<A>;
    /// CPUs whose records an unlock looks at: `0..waiter_cpus()`.
    fn waiter_cpus(&self) -> usize;
    /// Rounds to spin before halting, for the waiter next in line.
    fn spin_threshold(&self) -> u32;
    /// Rounds to spin before halting, for waiters further back.
    fn spin_threshold_queued(&self) -> u32;
    /// Runs `f` with interrupts off: a wait nested in an interrupt handler
    /// must not reuse this CPU's record while it is set.
    fn irqs_off<R>(&self, f: impl FnOnce() -> R) -> R;
    /// Halts until kicked, unless `*word == value`, checked so that a kick
    /// sent after this call began is never lost; may return early.
    fn halt_unless(&self, word: &A, value: u32);
    /// Ends `cpu`'s halt (or the one it is about to enter).
    fn kick(&self, cpu: usize);
}

/// The paravirt ticket lock's two words.
///
/// Tickets advance by 2; bit 0 of `next` is the slow-path flag: some
/// waiter may be halted. The waiter next in line spins [`SPIN_THRESHOLD`]
/// rounds, those behind it none; then, with IRQs off, a waiter writes its
/// CPU's record (this lock, its ticket), sets the flag, looks at `owner`
/// once more and halts. The unlock adds to `owner` and reads the flag,
/// both SeqCst: either the waiter sees its ticket served or the unlock sees
/// the flag (Dekker), reads the records and kicks the CPU of the new
/// owner's ticket and of the one after it (so that one is spinning when
/// its turn comes). With no waiter left it clears the flag, and the
/// uncontended unlock stays one `lock xadd` plus a load.
pub(crate) struct PvTickets<A = AtomicU32> {
    pub(super) next: A,
    pub(super) owner: A,
}

impl ConstInit for PvTickets {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = PvTickets {
        next: AtomicU32::new(0),
        owner: AtomicU32::new(0),
    };
}

impl<A: AtomicWord> PvTickets<A> {
    /// An unlocked lock over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        PvTickets {
            next: A::with_value(0),
            owner: A::with_value(0),
        }
    }

    /// The lock's id in wait records: its address, never 0 (collisions of
    /// the low bits only cost a spurious kick).
    fn id(&self) -> u32 {
        (&self.owner as *const A as usize as u32) | 1
    }

    #[inline(always)]
    fn is_served(&self, ticket: u32) -> bool {
        self.owner.load(Ordering::Acquire) == ticket
    }

    #[inline(always)]
    pub(crate) fn lock_fast(&self) -> Result<(), u32> {
        let ticket = self.next.fetch_add(INC, Ordering::Relaxed) & !SLOWPATH;
        if self.is_served(ticket) {
            Ok(())
        } else {
            Err(ticket)
        }
    }

    /// Waits for `ticket`: spin, then halt until kicked, and again.
    pub(crate) fn lock_slow_on(&self, ticket: u32, cpu: &impl PvCpu<A>, wait: &mut impl SpinWait) {
        loop {
            let mut spins = 0;
            loop {
                let owner = self.owner.load(Ordering::Acquire);
                if owner == ticket {
                    return;
                }
                // Next in line spins longer: the lock comes to it after one
                // critical section. Further back, a waiter halts soon and is
                // kicked when it becomes next.
                let next_in_line = ticket.wrapping_sub(owner) <= INC;
                let limit = if next_in_line {
                    cpu.spin_threshold()
                } else {
                    cpu.spin_threshold_queued()
                };
                if spins >= limit {
                    break;
                }
                spins += 1;
                A::relax();
                wait.round();
            }
            cpu.irqs_off(|| self.halt(ticket, cpu));
            wait.woke();
        }
    }

    /// `kvm_lock_spinning()`: record, flag, look once more, halt.
    fn halt(&self, ticket: u32, cpu: &impl PvCpu<A>) {
        let me = cpu.waiter(cpu.cpu());
        me.want.store(ticket, Ordering::Relaxed);
        me.lock.store(self.id(), Ordering::Relaxed);
        self.next.fetch_or(SLOWPATH, Ordering::SeqCst);
        A::mb_after_atomic();
        if self.owner.load(Ordering::SeqCst) != ticket {
            cpu.halt_unless(&self.owner, ticket);
        }
        me.lock.store(0, Ordering::Relaxed);
    }

    pub(crate) fn try_lock(&self) -> bool {
        // As the ticket lock's, with the flag kept as found.
        let owner = self.owner.load(Ordering::Acquire);
        let next = self.next.load(Ordering::Relaxed);
        next & !SLOWPATH == owner
            && self
                .next
                .compare_exchange(next, next + INC, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Serves the next ticket; kicks if a waiter may be halted.
    #[inline(always)]
    pub(crate) fn unlock_on(&self, cpu: &impl PvCpu<A>) {
        // A locked add (full barrier) then the flag: see the type's doc.
        let owner = self
            .owner
            .fetch_add(INC, Ordering::SeqCst)
            .wrapping_add(INC);
        A::mb_after_atomic();
        if self.next.load(Ordering::SeqCst) & SLOWPATH != 0 {
            self.unlock_slow(owner, cpu);
        }
    }

    /// `__ticket_unlock_slowpath()` + `kvm_unlock_kick()`.
    #[cold]
    #[inline(never)]
    fn unlock_slow(&self, owner: u32, cpu: &impl PvCpu<A>) {
        // Nobody holds a later ticket: no one to wake, drop the flag.
        if self
            .next
            .compare_exchange(
                owner | SLOWPATH,
                owner,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return;
        }
        let id = self.id();
        for n in 0..cpu.waiter_cpus() {
            let w = cpu.waiter(n);
            if w.lock.load(Ordering::SeqCst) == id {
                let want = w.want.load(Ordering::Relaxed);
                if want == owner || want == owner.wrapping_add(INC) {
                    cpu.kick(n);
                }
            }
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) & !SLOWPATH != self.owner.load(Ordering::Relaxed)
    }
}

/// The kernel's wait records.
static WAITERS: [PvWaiter; MAX_CPUS] = [const {
    PvWaiter {
        lock: AtomicU32::new(0),
        want: AtomicU32::new(0),
    }
}; MAX_CPUS];
/// CPUs now halted in a lock wait, and since when (cycles, 0: not).
static HALTED: AtomicU32 = AtomicU32::new(0);
static HALTED_SINCE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Halts and kicks sent (all CPUs).
static HALTS: AtomicU64 = AtomicU64::new(0);
static KICKS: AtomicU64 = AtomicU64::new(0);

/// The machine as [`PvCpu`]: records in a static, NMI kicks.
///
/// The kick is an NMI: these locks are taken with IRQs off, and a `hlt`
/// with IF=0 wakes only on an NMI. An NMI that arrives before the halt
/// would be lost, so the last check and the `hlt` are one code range
/// (`platform::halt_unless`): an NMI inside it moves the return address
/// past the `hlt`, one before it precedes the check, which then sees the
/// owner update made before the kick. A timer sweep kicks CPUs halted for
/// long and the last CPU that would halt spins instead, so every wait stays
/// under the lock watchdog.
pub(crate) struct KernelPv;

impl PvCpu<AtomicU32> for KernelPv {
    fn cpu(&self) -> usize {
        platform::cpu_id()
    }

    fn waiter(&self, cpu: usize) -> &PvWaiter {
        &WAITERS[cpu]
    }

    fn waiter_cpus(&self) -> usize {
        platform::cpus_online().min(MAX_CPUS)
    }

    fn spin_threshold(&self) -> u32 {
        SPIN_THRESHOLD
    }

    fn spin_threshold_queued(&self) -> u32 {
        SPIN_THRESHOLD_QUEUED
    }

    fn irqs_off<R>(&self, f: impl FnOnce() -> R) -> R {
        let flags = platform::local_irq_save();
        let r = f();
        platform::local_irq_restore(flags);
        r
    }

    fn halt_unless(&self, word: &AtomicU32, value: u32) {
        // The last CPU to wait stays awake: halted, it would leave no CPU
        // to kick anyone, and its watchdog would never run.
        let online = platform::cpus_online() as u32;
        if HALTED.fetch_add(1, Ordering::Relaxed) + 1 >= online {
            HALTED.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let me = platform::cpu_id();
        HALTED_SINCE[me].store(platform::cycles().max(1), Ordering::Relaxed);
        HALTS.fetch_add(1, Ordering::Relaxed);
        platform::halt_unless(word, value);
        HALTED_SINCE[me].store(0, Ordering::Relaxed);
        HALTED.fetch_sub(1, Ordering::Relaxed);
    }

    fn kick(&self, cpu: usize) {
        KICKS.fetch_add(1, Ordering::Relaxed);
        platform::kick_cpu(cpu);
    }
}

impl SpinProtocol for PvTickets {
    /// The ticket taken.
    type Pending = u32;

    #[inline(always)]
    fn lock_fast(&self) -> Result<(), u32> {
        PvTickets::lock_fast(self)
    }

    #[inline]
    fn lock_slow(&self, ticket: u32, wait: &mut impl SpinWait) {
        self.lock_slow_on(ticket, &KernelPv, wait);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        PvTickets::try_lock(self)
    }

    #[inline(always)]
    fn unlock(&self) {
        self.unlock_on(&KernelPv);
    }

    fn is_locked(&self) -> bool {
        PvTickets::is_locked(self)
    }
}

/// The timer sweep and the counters, on the machine only.
#[cfg(target_os = "none")]
mod sweep {
    use super::*;

    /// When the last sweep for forgotten waiters ran.
    static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);
    /// Kicks sent by the sweep (all CPUs).
    static SWEEP_KICKS: AtomicU64 = AtomicU64::new(0);

    /// How long a halted waiter waits for its kick before the sweep sends one.
    const SWEEP_MS: u64 = 10;

    /// Run on every timer tick while `lock=pv-ticket`: kicks waiters halted
    /// for more than [`SWEEP_MS`] (a kick can only be missed by a bug, but a
    /// bug must end in the watchdog's message, not in a silent halt).
    pub(crate) fn timer_tick() {
        if HALTED.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = platform::cycles();
        let period = SWEEP_MS * (platform::cycles_per_sec() / 1000).max(1);
        let last = LAST_SWEEP.load(Ordering::Relaxed);
        if now.wrapping_sub(last) < period
            || LAST_SWEEP
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (cpu, since) in HALTED_SINCE[..platform::cpus_online().min(MAX_CPUS)]
            .iter()
            .enumerate()
        {
            let since = since.load(Ordering::Relaxed);
            if since != 0 && now.wrapping_sub(since) > period {
                SWEEP_KICKS.fetch_add(1, Ordering::Relaxed);
                platform::kick_cpu(cpu);
            }
        }
    }

    /// Whether some CPU is halted in a lock wait now: then an idle CPU
    /// keeps its tick (`task::nohz`), so the sweep still runs if the
    /// holder's CPU goes idle too.
    pub(crate) fn waiters_halted() -> bool {
        HALTED.load(Ordering::Relaxed) != 0
    }

    /// Halts, kicks and sweep kicks so far, over all CPUs.
    pub(crate) fn stats() -> [u64; 3] {
        [&HALTS, &KICKS, &SWEEP_KICKS].map(|c| c.load(Ordering::Relaxed))
    }
}

#[cfg(target_os = "none")]
pub(crate) use sweep::{stats, timer_tick, waiters_halted};

#[cfg(all(test, loom))]
mod loom_models;
