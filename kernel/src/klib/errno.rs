//! Linux error numbers as a Rust enum.
//!
//! Portable kernel code returns `Result<T, Errno>` for anything a caller can
//! cause, instead of panicking or returning negative integers the way C
//! does. The variants carry Linux's names and numbers (include/uapi/
//! asm-generic/errno-base.h and errno.h), so `-(e as i32)` is what the Linux
//! function would have returned and `Display` prints the name a reader of
//! the Linux source expects ("EAGAIN", not "Resource temporarily
//! unavailable").

use core::fmt;

/// A Linux error number (the positive value; Linux returns its negation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
#[allow(clippy::upper_case_acronyms, reason = "Linux's names")]
pub(crate) enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (also: no such entry, e.g. `idr_replace`).
    ENOENT = 2,
    /// No such process.
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No child processes.
    ECHILD = 10,
    /// Try again (resource temporarily unavailable).
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Device or resource busy.
    EBUSY = 16,
    /// The object exists.
    EEXIST = 17,
    /// Invalid argument.
    EINVAL = 22,
    /// No space left (Linux's IDR: no free id in the range).
    ENOSPC = 28,
    /// Out of range.
    ERANGE = 34,
    /// Resource deadlock would occur.
    EDEADLK = 35,
    /// Function not implemented.
    ENOSYS = 38,
}

impl Errno {
    /// Every variant, for tests and tables.
    pub(crate) const ALL: [Errno; 16] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EINVAL,
        Errno::ENOSPC,
        Errno::ERANGE,
        Errno::EDEADLK,
        Errno::ENOSYS,
    ];

    /// The positive Linux error number.
    #[cfg(test)]
    pub(crate) const fn number(self) -> i32 {
        self as i32
    }

    /// The value a Linux function returns for this error (`-errno`).
    #[cfg(test)]
    pub(crate) const fn to_negative(self) -> i32 {
        -(self as i32)
    }

    /// The variant for a positive or negative Linux error number.
    #[cfg(test)]
    pub(crate) fn from_number(n: i32) -> Option<Errno> {
        let n = n.checked_abs()?;
        Errno::ALL.into_iter().find(|e| e.number() == n)
    }

    /// Linux's name for the error, e.g. `"ENOMEM"`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSPC => "ENOSPC",
            Errno::ERANGE => "ERANGE",
            Errno::EDEADLK => "EDEADLK",
            Errno::ENOSYS => "ENOSYS",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_match_linux() {
        assert_eq!(Errno::ENOMEM.to_string(), "ENOMEM");
        assert_eq!(Errno::EAGAIN.number(), 11);
        assert_eq!(Errno::EEXIST.to_negative(), -17);
        assert_eq!(Errno::ENOSPC.number(), 28);
        for e in Errno::ALL {
            assert_eq!(Errno::from_number(e.number()), Some(e));
            assert_eq!(Errno::from_number(e.to_negative()), Some(e));
            assert_eq!(format!("{e}"), e.name());
        }
        assert_eq!(Errno::from_number(0), None);
        assert_eq!(Errno::from_number(i32::MIN), None);
    }
}
