//! Leaving QEMU with a status: the isa-debug-exit device (the codes and
//! what QEMU turns them into are in [`pidlab_abi::debug_exit`], which the
//! runner reads too).

pub(crate) use pidlab_abi::debug_exit::ExitCode;
use pidlab_abi::debug_exit::{IOSIZE, PORT};
use x86_64::instructions::port::Port;

// The runner declares the device this wide; the kernel writes a `u32`.
const _: () = assert!(IOSIZE as usize == core::mem::size_of::<u32>());

/// Exits QEMU. If the device is missing (not under our runner), halts.
pub(crate) fn exit(code: ExitCode) -> ! {
    // SAFETY: writing the isa-debug-exit port only makes QEMU exit; on a
    // machine without the device the write is ignored.
    unsafe { Port::<u32>::new(PORT).write(code as u32) };
    super::cpu::halt_forever()
}
