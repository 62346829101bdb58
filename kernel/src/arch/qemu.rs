//! Leaving QEMU with a status: the isa-debug-exit device at port 0xf4.
//!
//! QEMU exits with `(value << 1) | 1`, so the runner sees 33 for
//! [`ExitCode::Success`] and 35 for [`ExitCode::Failure`]; any other status
//! (0 after a triple fault with `-no-reboot`, a signal) is a failure too.

use x86_64::instructions::port::Port;

const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Success = 0x10,
    Failure = 0x11,
}

/// Exits QEMU. If the device is missing (not under our runner), halts.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: writing the isa-debug-exit port only makes QEMU exit; on a
    // machine without the device the write is ignored.
    unsafe { Port::<u32>::new(ISA_DEBUG_EXIT_PORT).write(code as u32) };
    super::cpu::halt_forever()
}
