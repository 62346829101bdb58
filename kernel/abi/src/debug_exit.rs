//! Leaving QEMU with a verdict: the kernel writes an [`ExitCode`] to the
//! isa-debug-exit device, and QEMU exits with `(value << 1) | 1`
//! ([`ExitCode::qemu_status`]). Every other QEMU status (0 after a triple
//! fault with `-no-reboot`, a signal, a QEMU error) is a failure too.

/// The device's I/O port (`iobase=`).
pub const PORT: u16 = 0xf4;

/// The device's width in bytes (`iosize=`): the kernel writes a `u32`.
pub const IOSIZE: u16 = 4;

/// What the kernel writes to [`PORT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Success = 0x10,
    Failure = 0x11,
}

impl ExitCode {
    /// The status QEMU exits with after the kernel wrote `self`.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The code the kernel wrote, judged from QEMU's exit status; `None`
    /// when QEMU ended for another reason.
    pub fn from_qemu_status(status: i32) -> Option<ExitCode> {
        [ExitCode::Success, ExitCode::Failure]
            .into_iter()
            .find(|c| c.qemu_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_statuses_are_odd_and_distinct_from_a_clean_exit() {
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        assert_eq!(ExitCode::Failure.qemu_status(), 35);
        assert_eq!(ExitCode::from_qemu_status(33), Some(ExitCode::Success));
        assert_eq!(ExitCode::from_qemu_status(35), Some(ExitCode::Failure));
        for other in [0, 1, 2, 34, 124] {
            assert_eq!(ExitCode::from_qemu_status(other), None);
        }
    }
}
