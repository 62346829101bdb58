//! The arch seam: the few machine facts portable code needs.
//!
//! Portable modules (locks, IDR, pid namespaces, tasks, statistics) never
//! touch `arch` directly; they call these functions. On the bare-metal build
//! they are the real thing (RFLAGS.IF, `pause`, RDTSC, the per-CPU area). On
//! the host they are a faithful simulation, so unit tests, std-thread stress
//! tests and `loom` models exercise the same code:
//!
//! - each host thread is a "CPU": it claims a free CPU id on first use (or
//!   [`host::bind_cpu`] picks one) and releases it when the thread ends, so
//!   two live threads never share per-CPU data;
//! - each thread has its own simulated interrupt flag, so IRQ discipline
//!   (`local_irq_save` inside an IRQ-safe lock, assertions that IF=0) is
//!   checked on the host as well;
//! - cycles are nanoseconds of the monotonic clock.
//!
//! The kernel is not preemptive: a task runs until it blocks or exits, and
//! only interrupts can run other code on its CPU. So "IRQs off" is all it
//! takes for exclusive use of this CPU's per-CPU data ([`PerCpu`]).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

pub(crate) use crate::MAX_CPUS;

/// Saved interrupt state, from [`local_irq_save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "restore the interrupt state with local_irq_restore"]
pub(crate) struct IrqFlags {
    were_enabled: bool,
}

impl IrqFlags {
    /// Whether interrupts were on when the flags were saved.
    pub(crate) fn were_enabled(&self) -> bool {
        self.were_enabled
    }
}

#[cfg(target_os = "none")]
mod imp {
    use super::IrqFlags;
    use crate::arch::{cpu, percpu};
    use x86_64::instructions::interrupts;

    #[inline]
    pub(crate) fn cpu_id() -> usize {
        percpu::cpu_index() as usize
    }

    #[inline]
    pub(crate) fn cpu_relax() {
        core::hint::spin_loop();
    }

    #[inline]
    pub(crate) fn cycles() -> u64 {
        cpu::rdtsc()
    }

    pub(crate) fn cycles_per_sec() -> u64 {
        cpu::tsc_hz()
    }

    #[inline]
    pub(crate) fn irqs_enabled() -> bool {
        interrupts::are_enabled()
    }

    #[inline]
    pub(crate) fn local_irq_disable() {
        interrupts::disable();
    }

    #[inline]
    pub(crate) fn local_irq_enable() {
        interrupts::enable();
    }

    #[inline]
    pub(crate) fn local_irq_save() -> IrqFlags {
        let were_enabled = interrupts::are_enabled();
        if were_enabled {
            interrupts::disable();
        }
        IrqFlags { were_enabled }
    }

    #[inline]
    pub(crate) fn in_interrupt() -> bool {
        percpu::this_cpu().in_interrupt()
    }

    pub(crate) fn cpus_online() -> usize {
        crate::arch::smp::online()
    }

    pub(crate) fn halt_unless(word: &core::sync::atomic::AtomicU32, value: u32) {
        cpu::halt_unless(word, value);
    }

    pub(crate) fn kick_cpu(cpu: usize) {
        crate::arch::smp::kick(cpu);
    }

    pub(crate) fn cond_resched() {
        crate::task::sched::cond_resched()
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
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
}

/// Host-only controls of the simulation.
#[cfg(not(target_os = "none"))]
pub(crate) mod host {
    /// Makes this thread CPU `id` (panics if another live thread has it).
    pub(crate) fn bind_cpu(id: usize) {
        super::imp::bind_cpu(id)
    }

    /// Runs `f` as an interrupt handler would: IRQs off, `in_interrupt()`.
    pub(crate) fn run_as_interrupt<R>(f: impl FnOnce() -> R) -> R {
        super::imp::run_as_interrupt(f)
    }
}

/// This CPU's dense index, below [`MAX_CPUS`].
#[inline]
pub(crate) fn cpu_id() -> usize {
    imp::cpu_id()
}

/// Spin-wait hint (`pause`).
#[inline]
pub(crate) fn cpu_relax() {
    imp::cpu_relax()
}

/// A monotonic cycle counter (TSC on the machine, nanoseconds on the host).
#[inline]
pub(crate) fn cycles() -> u64 {
    imp::cycles()
}

/// [`cycles`] per second (the calibrated TSC frequency on the machine).
pub(crate) fn cycles_per_sec() -> u64 {
    imp::cycles_per_sec()
}

/// Whether interrupts are enabled on this CPU.
#[inline]
pub(crate) fn irqs_enabled() -> bool {
    imp::irqs_enabled()
}

/// `local_irq_disable()`.
#[inline]
pub(crate) fn local_irq_disable() {
    imp::local_irq_disable()
}

/// `local_irq_enable()`.
#[inline]
pub(crate) fn local_irq_enable() {
    imp::local_irq_enable()
}

/// `local_irq_save()`: disables interrupts, returning the previous state.
#[inline]
pub(crate) fn local_irq_save() -> IrqFlags {
    imp::local_irq_save()
}

/// `local_irq_restore()`: re-enables interrupts if they were on at save.
#[inline]
pub(crate) fn local_irq_restore(flags: IrqFlags) {
    if flags.were_enabled {
        imp::local_irq_enable();
    }
}

/// Whether this CPU is running an interrupt handler.
#[inline]
pub(crate) fn in_interrupt() -> bool {
    imp::in_interrupt()
}

/// CPUs running (the host simulation: as many as there may be).
pub(crate) fn cpus_online() -> usize {
    imp::cpus_online()
}

/// Halts this CPU until [`kick_cpu`] or an interrupt, unless `*word ==
/// value`. The check and the halt are one unit with respect to kicks: a
/// kick sent after this call began ends the halt or prevents it, whatever
/// instruction it arrives at. Called with IRQs off (then only a kick ends
/// the halt).
pub(crate) fn halt_unless(word: &core::sync::atomic::AtomicU32, value: u32) {
    imp::halt_unless(word, value)
}

/// Ends CPU `cpu`'s [`halt_unless`] (an NMI on the machine).
pub(crate) fn kick_cpu(cpu: usize) {
    imp::kick_cpu(cpu)
}

/// `cond_resched()`: a scheduling point for long loops (the soft-lockup
/// detector counts it as one; other tasks of this CPU get to run). Nothing
/// on the host.
#[inline]
pub(crate) fn cond_resched() {
    imp::cond_resched()
}

/// Runs work on several CPUs at once: the seam benchmarks and SMP tests use
/// so the same code runs on the machine's CPUs and on host threads.
pub(crate) trait Parallel: Sync {
    /// CPUs available to [`run`](Self::run).
    fn cpus(&self) -> usize;

    /// Runs `f(i)` for `i` in `0..n`, each on its own CPU, all at once, and
    /// returns when every call has returned. `n` must not exceed
    /// [`cpus`](Self::cpus).
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync));
}

/// [`Parallel`] over host threads, each bound to its own simulated CPU.
#[cfg(not(target_os = "none"))]
pub(crate) struct HostThreads(pub usize);

#[cfg(not(target_os = "none"))]
impl Parallel for HostThreads {
    fn cpus(&self) -> usize {
        self.0
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(n <= self.0, "asked for {n} CPUs of {}", self.0);
        std::thread::scope(|s| {
            for i in 0..n {
                s.spawn(move || f(i));
            }
        });
    }
}

/// Per-CPU data: one `T` per CPU, used only by its CPU with interrupts off.
///
/// [`with`](Self::with) hands out `&mut T` for this CPU's slot. Interrupts
/// off keep other code off the CPU, but nothing in the types stops `f`
/// from calling `with` on the same table again, which would make a second
/// `&mut` to the slot; so each slot carries a busy flag, set for the
/// duration of `f`, and a nested `with` panics naming the table instead.
pub(crate) struct PerCpu<T> {
    slots: [CacheAligned<Slot<T>>; MAX_CPUS],
}

#[repr(align(128))]
struct CacheAligned<T>(T);

struct Slot<T> {
    /// Set while a `with` on this CPU holds the slot. Only this CPU
    /// touches it, with interrupts off, so plain loads and stores do.
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

impl<T> Slot<T> {
    const fn new(value: T) -> Self {
        Slot {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }
}

// SAFETY: a slot's value is only reached through `with`, which hands CPU
// `i`'s slot to code running on CPU `i` with interrupts off and refuses a
// nested call while the slot is held; nothing else can run on that CPU
// meanwhile (the kernel is not preemptive), so access is exclusive.
unsafe impl<T: Send> Sync for PerCpu<T> {}

impl<T: Copy> PerCpu<T> {
    /// Builds the table with a copy of `init` in every slot, at compile time
    /// (so a large table can be a plain `static`, never built on a stack).
    pub(crate) const fn new_copied(init: T) -> Self {
        let mut slots: [MaybeUninit<CacheAligned<Slot<T>>>; MAX_CPUS] =
            [const { MaybeUninit::uninit() }; MAX_CPUS];
        let mut i = 0;
        while i < MAX_CPUS {
            slots[i] = MaybeUninit::new(CacheAligned(Slot::new(init)));
            i += 1;
        }
        // SAFETY: every element was initialised above, and an array of
        // MaybeUninit<X> has the layout of an array of X.
        let slots = unsafe {
            core::ptr::read(
                &slots as *const [MaybeUninit<CacheAligned<Slot<T>>>; MAX_CPUS]
                    as *const [CacheAligned<Slot<T>>; MAX_CPUS],
            )
        };
        PerCpu { slots }
    }
}

/// Releases a slot taken by [`PerCpu::with`] and restores interrupts, also
/// when `f` unwinds (host tests), so a failed test leaves the CPU usable.
struct SlotHold<'a> {
    busy: &'a AtomicBool,
    flags: IrqFlags,
}

impl Drop for SlotHold<'_> {
    #[inline]
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Relaxed);
        local_irq_restore(self.flags);
    }
}

impl<T> PerCpu<T> {
    /// Builds the table, calling `init` for each CPU slot.
    #[cfg(test)]
    pub(crate) fn new(mut init: impl FnMut() -> T) -> Self {
        PerCpu {
            slots: core::array::from_fn(|_| CacheAligned(Slot::new(init()))),
        }
    }

    /// Runs `f` on this CPU's slot with interrupts off.
    ///
    /// Panics if `f` calls `with` on the same table again: that would
    /// alias the slot.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let flags = local_irq_save();
        let cpu = cpu_id();
        let slot = &self.slots[cpu].0;
        if slot.busy.load(Ordering::Relaxed) {
            local_irq_restore(flags);
            reentered::<T>(cpu);
        }
        slot.busy.store(true, Ordering::Relaxed);
        let _hold = SlotHold {
            busy: &slot.busy,
            flags,
        };
        // SAFETY: see the `Sync` impl: this CPU's slot, interrupts off, and
        // the busy flag (clear above, set until `_hold` drops) makes this
        // the only `&mut` to it.
        f(unsafe { &mut *slot.value.get() })
    }

    /// Visits every CPU's slot. Only sound when no CPU uses the table
    /// concurrently (e.g. after the benchmark, all workers parked).
    ///
    /// # Safety
    /// No other CPU may be inside [`with`](Self::with) on this table.
    pub(crate) unsafe fn for_each(&self, mut f: impl FnMut(usize, &mut T)) {
        for (cpu, slot) in self.slots.iter().enumerate() {
            if slot.0.busy.load(Ordering::Relaxed) {
                reentered::<T>(cpu);
            }
            // SAFETY: the caller guarantees nobody else uses the table,
            // and this CPU is not inside `with` on it (checked above).
            f(cpu, unsafe { &mut *slot.0.value.get() });
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn reentered<T>(cpu: usize) -> ! {
    panic!(
        "PerCpu::with re-entered on CPU {cpu}: a nested with() on the same PerCpu<{}> would alias its slot",
        core::any::type_name::<T>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_save_restore_nests() {
        assert!(irqs_enabled());
        let outer = local_irq_save();
        assert!(!irqs_enabled());
        let inner = local_irq_save();
        local_irq_restore(inner);
        assert!(!irqs_enabled(), "inner restore must not re-enable");
        local_irq_restore(outer);
        assert!(irqs_enabled());
    }

    #[test]
    fn live_threads_get_distinct_cpu_ids() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let ids: Vec<usize> = (0..8)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let id = cpu_id();
                    b.wait();
                    id
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn interrupt_context_is_simulated() {
        assert!(!in_interrupt());
        host::run_as_interrupt(|| {
            assert!(in_interrupt());
            assert!(!irqs_enabled());
        });
        assert!(!in_interrupt() && irqs_enabled());
    }

    #[test]
    fn per_cpu_slots_are_private() {
        let table = std::sync::Arc::new(PerCpu::new(|| 0u64));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (t, b) = (table.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        t.with(|v| *v += 1);
                    }
                    // All four are alive here, so their CPU ids differ.
                    b.wait();
                    t.with(|v| *v)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 1000);
        }
    }

    #[test]
    #[should_panic(expected = "PerCpu::with re-entered on CPU")]
    fn nested_with_on_the_same_table_panics() {
        let table = PerCpu::new(|| 0u64);
        table.with(|outer| {
            // Without the busy flag this would be a second `&mut` to the
            // slot `outer` points at.
            table.with(|inner| *inner += 1);
            *outer += 1;
        });
    }

    #[test]
    fn nested_with_names_the_table_and_leaves_it_usable() {
        let table = PerCpu::new(|| 0u64);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.with(|_| table.with(|_| ()));
        }))
        .expect_err("a nested with must panic");
        let msg = err.downcast_ref::<String>().expect("a formatted message");
        assert!(msg.contains("PerCpu<u64>"), "{msg}");
        assert!(msg.contains("would alias its slot"), "{msg}");
        // The unwind released the slot and restored interrupts.
        assert!(irqs_enabled());
        assert_eq!(table.with(|v| *v), 0);
        // Different tables nest fine.
        let other = PerCpu::new(|| 1u64);
        assert_eq!(table.with(|a| other.with(|b| *a + *b)), 1);
    }
}
