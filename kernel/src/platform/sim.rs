//! The seam simulated on the host: threads as CPUs, a per-thread interrupt
//! flag, nanoseconds as cycles (see the module doc of `platform`).

use super::{IrqFlags, MAX_CPUS};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static CLAIMED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static EPOCH: Mutex<Option<Instant>> = Mutex::new(None);

/// The thread that holds each CPU id, for kicks.
static THREADS: [Mutex<Option<std::thread::Thread>>; MAX_CPUS] =
    [const { Mutex::new(None) }; MAX_CPUS];

/// A thread's claim on a simulated CPU id, released when it exits.
struct Claim(Cell<Option<usize>>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(id) = self.0.get() {
            *THREADS[id].lock().unwrap_or_else(|e| e.into_inner()) = None;
            CLAIMED[id].store(false, Ordering::Release);
        }
    }
}

std::thread_local! {
    static CPU: Claim = const { Claim(Cell::new(None)) };
    static IRQS_ON: Cell<bool> = const { Cell::new(true) };
    static IN_IRQ: Cell<u32> = const { Cell::new(0) };
}

fn claim(id: usize) -> bool {
    let claimed = CLAIMED[id]
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if claimed {
        *THREADS[id].lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
    }
    claimed
}

pub(crate) fn bind_cpu(id: usize) {
    assert!(id < MAX_CPUS, "cpu id {id} out of range");
    CPU.with(|c| {
        assert!(c.0.get().is_none(), "this thread already has a CPU id");
        assert!(claim(id), "cpu id {id} is taken by another live thread");
        c.0.set(Some(id));
    });
}

pub(crate) fn cpu_id() -> usize {
    CPU.with(|c| {
        if let Some(id) = c.0.get() {
            return id;
        }
        let id = (0..MAX_CPUS)
            .find(|&id| claim(id))
            .expect("more live threads than MAX_CPUS simulated CPUs");
        c.0.set(Some(id));
        id
    })
}

pub(crate) fn cpu_relax() {
    core::hint::spin_loop();
    // Under heavy oversubscription, let the holder run.
    std::thread::yield_now();
}

pub(crate) fn cycles() -> u64 {
    let epoch = *EPOCH.lock().unwrap().get_or_insert_with(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

pub(crate) fn cycles_per_sec() -> u64 {
    1_000_000_000
}

pub(crate) fn irqs_enabled() -> bool {
    IRQS_ON.with(Cell::get)
}

pub(crate) fn local_irq_disable() {
    IRQS_ON.with(|f| f.set(false));
}

pub(crate) fn local_irq_enable() {
    IRQS_ON.with(|f| f.set(true));
}

pub(crate) fn local_irq_save() -> IrqFlags {
    IrqFlags {
        were_enabled: IRQS_ON.with(|f| f.replace(false)),
    }
}

pub(crate) fn in_interrupt() -> bool {
    IN_IRQ.with(Cell::get) > 0
}

pub(crate) fn cpus_online() -> usize {
    MAX_CPUS
}

/// A parked thread stands in for a halted CPU; `park` keeps an unpark
/// that came first, so no kick is lost, and the timeout bounds a halt
/// whose kick never comes (the caller checks again).
pub(crate) fn halt_unless(word: &std::sync::atomic::AtomicU32, value: u32) {
    if word.load(Ordering::SeqCst) != value {
        std::thread::park_timeout(std::time::Duration::from_millis(1));
    }
}

pub(crate) fn kick_cpu(cpu: usize) {
    let thread = THREADS[cpu]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(t) = thread {
        t.unpark();
    }
}

pub(crate) fn cond_resched() {}

pub(crate) fn run_as_interrupt<R>(f: impl FnOnce() -> R) -> R {
    let was_on = IRQS_ON.with(|i| i.replace(false));
    IN_IRQ.with(|d| d.set(d.get() + 1));
    let r = f();
    IN_IRQ.with(|d| d.set(d.get() - 1));
    IRQS_ON.with(|i| i.set(was_on));
    r
}
