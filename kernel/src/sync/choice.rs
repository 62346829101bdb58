//! `lock=`: which algorithm the kernel's spinlocks run, chosen once at boot.
//!
//! Every kernel spinlock (`pidmap_lock`, `input_pool.lock`, the run queues,
//! `tasklist_lock`'s wait queue, ...) is a [`DynSpin`]: room for each
//! algorithm's words, and a dispatch on the algorithm's bits of the mode
//! byte ([`super::mode`]) that every acquisition reads anyway for the
//! statistics switch, so the ticket lock pays no extra test. The
//! choice is made before any CPU takes one of these locks and is never
//! changed, so every lock runs one algorithm for its whole life. The lock
//! benchmark compares the dispatched lock with each algorithm's own type
//! (`RawSpinLock<Tickets>` etc.), which is what the dispatch costs.
//!
//! `auto` follows Linux: a guest whose vCPUs outnumber the host's cores
//! gets test-and-set, as `virt_spin_lock()` gives any guest without
//! paravirt spinlocks (a FIFO lock there waits for descheduled vCPUs);
//! otherwise the FIFO ticket lock. The runner passes the host's core count;
//! without it, CPUID's hypervisor bit decides, as in Linux.

use alloc::format;
use alloc::string::String;

use super::mode;
use super::pvticket::PvTickets;
use super::qspinlock::QSpin;
use super::raw::{ConstInit, SpinProtocol, SpinWait};
use super::tas::Tas;
use super::ticket::Tickets;

/// A spinlock algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LockAlgo {
    /// FIFO ticket lock.
    Ticket = 0,
    /// Ticket lock whose waiters halt and are kicked.
    PvTicket = 1,
    /// Linux's queued spinlock.
    Qspinlock = 2,
    /// Test-and-test-and-set.
    Tas = 3,
}

impl LockAlgo {
    /// Every algorithm, in the order the benchmark prints them.
    pub(crate) const ALL: [LockAlgo; 4] = [
        LockAlgo::Ticket,
        LockAlgo::PvTicket,
        LockAlgo::Qspinlock,
        LockAlgo::Tas,
    ];

    /// The name `lock=` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            LockAlgo::Ticket => "ticket",
            LockAlgo::PvTicket => "pv-ticket",
            LockAlgo::Qspinlock => "qspinlock",
            LockAlgo::Tas => "tas",
        }
    }

    /// The algorithm called `name`.
    pub(crate) fn by_name(name: &str) -> Option<LockAlgo> {
        LockAlgo::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether waiters are served in arrival order.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    pub(crate) fn is_fifo(self) -> bool {
        self != LockAlgo::Tas
    }
}

/// What `lock=` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockChoice {
    Auto,
    Force(LockAlgo),
}

/// The facts `auto` decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) struct Machine {
    pub(crate) vcpus: usize,
    /// The host's cores, as the runner saw them (`host_cpus=`).
    pub(crate) host_cpus: Option<u32>,
    /// CPUID.1:ECX bit 31.
    pub(crate) hypervisor: bool,
}

/// The algorithm for `choice` on `machine`, and the boot line that says
/// which and why.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn decide(choice: LockChoice, machine: Machine) -> (LockAlgo, String) {
    let Machine {
        vcpus,
        host_cpus,
        hypervisor,
    } = machine;
    let algo = match choice {
        LockChoice::Force(algo) => {
            return (algo, format!("{} (lock={})", algo.name(), algo.name()));
        }
        LockChoice::Auto => match host_cpus {
            Some(cores) if vcpus > cores as usize => LockAlgo::Tas,
            Some(_) => LockAlgo::Ticket,
            None if hypervisor => LockAlgo::Tas,
            None => LockAlgo::Ticket,
        },
    };
    let on = |cores: u32| {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{vcpus} vCPU{} on {cores} host core{}",
            plural(vcpus),
            plural(cores as usize)
        )
    };
    let why = match (algo, host_cpus) {
        (LockAlgo::Tas, Some(cores)) => format!(
            "{}, as Linux's virt_spin_lock; lock=ticket forces FIFO tickets",
            on(cores)
        ),
        (LockAlgo::Tas, None) => String::from(
            "a hypervisor (CPUID) and no host core count, as Linux's virt_spin_lock; lock=ticket forces FIFO tickets",
        ),
        (_, Some(cores)) => format!(
            "{}, no waiter for a descheduled vCPU; lock=tas forces test-and-set",
            on(cores)
        ),
        (_, None) => String::from("no hypervisor (CPUID); lock=tas forces test-and-set"),
    };
    (algo, format!("{} (auto: {why})", algo.name()))
}

/// The algorithm every [`DynSpin`] runs.
#[inline(always)]
pub(crate) fn lock_algo() -> LockAlgo {
    algo_of(mode::load())
}

#[inline(always)]
fn algo_of(mode: u8) -> LockAlgo {
    match mode::algo(mode) {
        1 => LockAlgo::PvTicket,
        2 => LockAlgo::Qspinlock,
        3 => LockAlgo::Tas,
        _ => LockAlgo::Ticket,
    }
}

/// Sets the algorithm of every [`DynSpin`]. Only before any of them is
/// taken (boot, before the APs start): a lock held under one algorithm and
/// released under another would let two CPUs in.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn set_lock_algo(algo: LockAlgo) {
    mode::set_algo(algo as u8);
}

/// Every algorithm's words; [`lock_algo`] says which are live.
pub(crate) struct DynSpin {
    ticket: Tickets,
    pv: PvTickets,
    q: QSpin,
    tas: Tas,
}

impl ConstInit for DynSpin {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = DynSpin {
        ticket: Tickets::UNLOCKED,
        pv: PvTickets::UNLOCKED,
        q: QSpin::UNLOCKED,
        tas: Tas::UNLOCKED,
    };
}

/// What a [`DynSpin`] fast path hands its slow path.
#[derive(Clone, Copy)]
pub(crate) enum DynPending {
    Ticket(u32),
    Pv(u32),
    Q(u32),
    Tas,
}

impl SpinProtocol for DynSpin {
    type Pending = DynPending;

    #[inline(always)]
    fn lock_fast(&self) -> Result<(), DynPending> {
        self.lock_fast_in(mode::load())
    }

    /// The ticket lock with no statistics: mode 0, one test against zero,
    /// the test a fixed lock makes of the statistics switch. Other
    /// algorithms take the general path (an out-of-line call).
    #[inline(always)]
    fn lock_fast_quick(&self, mode: u8) -> Option<Result<(), DynPending>> {
        (mode == 0).then(|| self.ticket.lock_fast().map_err(DynPending::Ticket))
    }

    #[inline(always)]
    fn unlock_quick(&self, mode: u8) -> bool {
        if mode == 0 {
            self.ticket.unlock();
        }
        mode == 0
    }

    #[inline(always)]
    fn lock_fast_in(&self, mode: u8) -> Result<(), DynPending> {
        match algo_of(mode) {
            LockAlgo::Ticket => self.ticket.lock_fast().map_err(DynPending::Ticket),
            LockAlgo::Tas => self.tas.lock_fast().map_err(|()| DynPending::Tas),
            LockAlgo::Qspinlock => self.q.lock_fast().map_err(DynPending::Q),
            LockAlgo::PvTicket => self.pv.lock_fast().map_err(DynPending::Pv),
        }
    }

    #[inline]
    fn lock_slow(&self, pending: DynPending, wait: &mut impl SpinWait) {
        match pending {
            DynPending::Ticket(t) => self.ticket.lock_slow(t, wait),
            DynPending::Pv(t) => self.pv.lock_slow(t, wait),
            DynPending::Q(v) => self.q.lock_slow(v, wait),
            DynPending::Tas => self.tas.lock_slow((), wait),
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        match lock_algo() {
            LockAlgo::Ticket => self.ticket.try_lock(),
            LockAlgo::PvTicket => self.pv.try_lock(),
            LockAlgo::Qspinlock => self.q.try_lock(),
            LockAlgo::Tas => self.tas.try_lock(),
        }
    }

    #[inline(always)]
    fn unlock(&self) {
        self.unlock_in(mode::load());
    }

    #[inline(always)]
    fn unlock_in(&self, mode: u8) {
        match algo_of(mode) {
            LockAlgo::Ticket => self.ticket.unlock(),
            LockAlgo::Tas => self.tas.unlock(),
            LockAlgo::Qspinlock => SpinProtocol::unlock(&self.q),
            LockAlgo::PvTicket => SpinProtocol::unlock(&self.pv),
        }
    }

    fn is_locked(&self) -> bool {
        match lock_algo() {
            LockAlgo::Ticket => self.ticket.is_locked(),
            LockAlgo::PvTicket => SpinProtocol::is_locked(&self.pv),
            LockAlgo::Qspinlock => SpinProtocol::is_locked(&self.q),
            LockAlgo::Tas => self.tas.is_locked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(vcpus: usize, host_cpus: Option<u32>, hypervisor: bool) -> Machine {
        Machine {
            vcpus,
            host_cpus,
            hypervisor,
        }
    }

    #[test]
    fn names_round_trip() {
        for a in LockAlgo::ALL {
            assert_eq!(LockAlgo::by_name(a.name()), Some(a));
        }
        assert_eq!(LockAlgo::by_name("mcs"), None);
    }

    #[test]
    fn auto_picks_tas_only_when_vcpus_outnumber_host_cores() {
        let (a, line) = decide(LockChoice::Auto, machine(8, Some(2), true));
        assert_eq!(a, LockAlgo::Tas);
        assert_eq!(
            line,
            "tas (auto: 8 vCPUs on 2 host cores, as Linux's virt_spin_lock; lock=ticket forces FIFO tickets)"
        );
        let (a, line) = decide(LockChoice::Auto, machine(2, Some(2), true));
        assert_eq!(a, LockAlgo::Ticket);
        assert!(
            line.starts_with("ticket (auto: 2 vCPUs on 2 host cores"),
            "{line}"
        );
        assert_eq!(
            decide(LockChoice::Auto, machine(8, None, true)).0,
            LockAlgo::Tas
        );
        assert_eq!(
            decide(LockChoice::Auto, machine(8, None, false)).0,
            LockAlgo::Ticket
        );
    }

    #[test]
    fn a_forced_choice_wins() {
        let (a, line) = decide(
            LockChoice::Force(LockAlgo::Qspinlock),
            machine(8, Some(2), true),
        );
        assert_eq!(a, LockAlgo::Qspinlock);
        assert_eq!(line, "qspinlock (lock=qspinlock)");
    }
}
