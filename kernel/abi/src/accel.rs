//! The QEMU accelerator: the runner picks it (`--accel`) and tells the
//! kernel (`accel=NAME`), which prints it beside its results.

use core::fmt;

/// How QEMU runs the guest's CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation, one host thread per vCPU (MTTCG): the default
    /// (KVM here is nested and far slower). With more vCPUs than host
    /// cores, a vCPU can be descheduled by the host at any instruction.
    Tcg,
    /// Software emulation, all vCPUs round-robin on one host thread; a vCPU
    /// executing `pause` yields to the next, so spinning waiters never hold
    /// up a lock hand-off. No host parallelism.
    TcgSingle,
    /// Hardware virtualisation, opt-in.
    Kvm,
}

impl Accel {
    /// Every accelerator, in the order messages list them.
    pub const ALL: [Accel; 3] = [Accel::Tcg, Accel::TcgSingle, Accel::Kvm];

    /// The command-line key the runner sets (`accel=NAME`).
    pub const CMDLINE_KEY: &'static str = "accel";

    /// What a message says is accepted: every name in [`Accel::ALL`].
    pub const NAMES: &'static str = "tcg, tcg-single or kvm";

    /// The name used by `--accel` and `accel=`.
    pub const fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::TcgSingle => "tcg-single",
            Accel::Kvm => "kvm",
        }
    }

    /// The accelerator called `name`, if any.
    pub fn by_name(name: &str) -> Option<Accel> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_listed() {
        for a in Accel::ALL {
            assert_eq!(Accel::by_name(a.name()), Some(a));
            assert!(Accel::NAMES.contains(a.name()), "{a}");
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!(Accel::by_name("TCG"), None);
        assert_eq!(Accel::by_name(""), None);
        assert_eq!(Accel::by_name("tcg "), None);
    }
}
