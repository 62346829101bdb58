//! Kernel panics: print once, stop, exit QEMU with failure.
//!
//! The first CPU to panic stops the others with an NMI (their NMI handler
//! sees the panic in progress and halts) and reports; a CPU that panics
//! while another is reporting halts quietly, so the message is printed once. A panic raised
//! while this CPU is already panicking (say, the console itself faulted)
//! exits at once rather than recursing.

use core::sync::atomic::{AtomicU32, Ordering};

use pidlab_abi::console::PANIC_MARK;

use super::cpu;
use super::percpu::cpu_index;
use super::qemu::{self, ExitCode};

const NOBODY: u32 = u32::MAX;
static PANIC_CPU: AtomicU32 = AtomicU32::new(NOBODY);

/// Whether some CPU is reporting a panic.
pub(crate) fn in_progress() -> bool {
    PANIC_CPU.load(Ordering::Relaxed) != NOBODY
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    let me = cpu_index();
    match PANIC_CPU.compare_exchange(NOBODY, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(first) if first == me => {
            println!(
                "\n{PANIC_MARK} nested panic on cpu {me}: {}",
                info.message()
            );
            qemu::exit(ExitCode::Failure)
        }
        Err(_) => cpu::halt_forever(),
    }
    super::smp::stop_other_cpus();
    match info.location() {
        Some(loc) => println!(
            "\n{PANIC_MARK} KERNEL PANIC on cpu {me}: {}\n{PANIC_MARK}   at {}:{}:{}",
            info.message(),
            loc.file(),
            loc.line(),
            loc.column()
        ),
        None => println!(
            "\n{PANIC_MARK} KERNEL PANIC on cpu {me}: {}",
            info.message()
        ),
    }
    super::hooks::panic_report();
    qemu::exit(ExitCode::Failure)
}
