//! COM1 serial console and its lock.
//!
//! The console lock is a spinlock taken with interrupts off that records its
//! owner CPU. Interrupts being off means a timer or IPI handler cannot
//! interrupt the holder on its own CPU; the owner record covers what cannot
//! be masked (NMIs, exceptions raised while printing, a panic inside a
//! `print!`): when the current CPU already owns the lock, the nested writer
//! prints straight to the UART instead of deadlocking on itself. A wait for
//! the lock is checked against the lock wait bound (the `console_wait`
//! hook, which sync's lock watchdog fills in), which names a holder that
//! never lets go; during a panic a writer that has
//! waited too long takes the lock over instead, since its holder may have
//! been stopped for good.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

use super::percpu::cpu_index;
use super::{cpu, hooks};
use x86_64::instructions::interrupts::without_interrupts;

const COM1: u16 = 0x3f8;
const NO_OWNER: u32 = u32::MAX;
/// Spins before a panicking CPU takes the console from a stuck holder.
const PANIC_STEAL_SPINS: u64 = 50_000_000;
/// Spins between two checks of a console wait against the lock wait bound.
const WAIT_CHECK_SPINS: u64 = 1024;

struct Console {
    uart: UnsafeCell<Option<Uart16550<PioBackend>>>,
    owner: AtomicU32,
}

// SAFETY: `uart` is only used by the CPU recorded in `owner`.
unsafe impl Sync for Console {}

static CONSOLE: Console = Console {
    uart: UnsafeCell::new(None),
    owner: AtomicU32::new(NO_OWNER),
};

/// Sends bytes with a throw-away handle on COM1: used by nested writers,
/// which must not touch the handle the interrupted writer is using.
struct RawCom1;

impl Write for RawCom1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: COM1's eight ports exist on every PC and QEMU machine; a
        // fresh handle only polls the line status and writes the data port.
        if let Ok(mut uart) = unsafe { Uart16550::new_port(COM1) } {
            uart.send_bytes_exact(s.as_bytes());
        }
        Ok(())
    }
}

struct Locked<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Locked<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.send_bytes_exact(s.as_bytes());
        Ok(())
    }
}

/// Initialises COM1 (115200 8N1, FIFO on). Called once by the boot CPU
/// before the first print; prints before it go out unconfigured.
pub(crate) fn init() {
    without_interrupts(init_irqs_off);
}

fn init_irqs_off() {
    // SAFETY: COM1 exists on QEMU's PC machine and only the console uses it.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    // QEMU's UART has no line to fail on; if init reports an error, the
    // port still transmits, so carry on with what we have.
    let _ = uart.init(Config::default());
    lock();
    // SAFETY: we own the console lock.
    unsafe { *CONSOLE.uart.get() = Some(uart) };
    unlock();
}

fn try_lock(me: u32) -> bool {
    CONSOLE
        .owner
        .compare_exchange(NO_OWNER, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

fn lock() {
    let me = cpu_index();
    if try_lock(me) {
        return;
    }
    let start = cpu::rdtsc();
    let mut spins: u64 = 0;
    while !try_lock(me) {
        core::hint::spin_loop();
        spins += 1;
        if super::panic::in_progress() {
            if spins > PANIC_STEAL_SPINS {
                CONSOLE.owner.store(me, Ordering::Relaxed);
                return;
            }
        } else if spins.is_multiple_of(WAIT_CHECK_SPINS) {
            let holder = match CONSOLE.owner.load(Ordering::Relaxed) {
                NO_OWNER => None,
                cpu => Some(cpu as usize),
            };
            hooks::console_wait(cpu::rdtsc().saturating_sub(start), holder);
        }
    }
}

fn unlock() {
    CONSOLE.owner.store(NO_OWNER, Ordering::Release);
}

/// Writes formatted text to the console as one unit.
pub(crate) fn write_fmt(args: fmt::Arguments<'_>) {
    without_interrupts(|| write_fmt_irqs_off(args));
}

fn write_fmt_irqs_off(args: fmt::Arguments<'_>) {
    if CONSOLE.owner.load(Ordering::Relaxed) == cpu_index() {
        // Nested on this CPU (NMI, exception or panic while printing).
        let _ = RawCom1.write_fmt(args);
        return;
    }
    lock();
    // SAFETY: we own the console lock, and nested writers on this CPU use
    // `RawCom1` instead of this handle.
    match unsafe { &mut *CONSOLE.uart.get() } {
        Some(uart) => {
            let _ = Locked(uart).write_fmt(args);
        }
        None => {
            let _ = RawCom1.write_fmt(args);
        }
    }
    unlock();
}

/// A byte received on COM1, if one is waiting (polls the line status
/// register's data-ready bit; the console's transmit side is unaffected).
pub(crate) fn try_read_byte() -> Option<u8> {
    use x86_64::instructions::port::Port;
    let mut lsr: Port<u8> = Port::new(COM1 + 5);
    let mut data: Port<u8> = Port::new(COM1);
    // SAFETY: reading COM1's status and receive registers has no side
    // effect beyond consuming the received byte, which only pidctl's shell
    // (on the boot CPU) reads.
    unsafe {
        if lsr.read() & 1 != 0 {
            Some(data.read())
        } else {
            None
        }
    }
}
