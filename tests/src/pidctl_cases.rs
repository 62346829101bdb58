//! pidctl scripts with their answers, written by hand from DESIGN.md's
//! rules: `tests/pidctl.rs` runs them in the kernel, and the host model
//! (`pidctl_model`) must give the same answers, so the model that checks
//! random scripts is itself checked against these.

/// A script and the start of each answer line, in order.
pub struct Case {
    pub script: &'static str,
    /// What stock (6.14) and `exit-deferred` (6.15) answer.
    pub answers: &'static [&'static str],
    /// (line, answer) where the alloc change (`pidmap-once`, 7.0's `both`)
    /// answers otherwise: it checks every level's `set_tid` before taking
    /// any number.
    pub checks_first: &'static [(usize, &'static str)],
}

impl Case {
    /// The answers under pidctl's `strategy=NAME`.
    pub fn answers_for(&self, strategy: &str) -> Vec<&'static str> {
        let mut a = self.answers.to_vec();
        if crate::pidctl_model::CHECKS_FIRST.contains(&strategy) {
            for &(i, answer) in self.checks_first {
                a[i] = answer;
            }
        }
        a
    }
}

/// Spawning through three levels, a child namespace, waiting before and
/// after exit, and the pid each namespace sees.
pub const NAMESPACES: Case = Case {
    script: "spawn a\n\
             spawn b parent=a\n\
             spawn c parent=b newns\n\
             spawn d parent=c\n\
             ps\n\
             wait c\n\
             exit d code=3\n\
             wait d\n\
             exit c code=5\n\
             wait c\n\
             exit b\nwait b\nexit a code=1\nwait a\n\
             check\n",
    answers: &[
        "ok a pids=2",
        "ok b pids=3",
        "ok c pids=1,4",
        "ok d pids=2,5",
        "ok 5 tasks: init[1] a[2] b[3] c[1,4] d[2,5]",
        // waitpid(pid, WNOHANG) on a live child: 0, nothing reaped.
        "ok none",
        "ok d exited code=3",
        "ok d code=3 pid=2 reaped_by=c",
        "ok c exited code=5",
        "ok c code=5 pid=4 reaped_by=b",
        "ok b exited code=0",
        "ok b code=0 pid=3 reaped_by=a",
        "ok a exited code=1",
        "ok a code=1 pid=2 reaped_by=init",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// A namespace whose init exits takes no more pids, and its orphans go
/// to the root's init.
pub const REAPER_DEATH: Case = Case {
    script: "spawn n newns\n\
             spawn m parent=n\n\
             exit n code=7\n\
             spawn late parent=m\n\
             wait n\n\
             wait m\n\
             exit m\n\
             wait m\n\
             check\n",
    answers: &[
        "ok n pids=1,2",
        "ok m pids=2,3",
        "ok n exited code=7",
        // m's namespace lost its init: no more pids there.
        "err ENOMEM",
        "ok n code=7 pid=2 reaped_by=init",
        "ok none",
        "ok m exited code=0",
        // Reparented to the root's init when its reaper died.
        "ok m code=0 pid=3 reaped_by=init",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// A task inside a child namespace exits with a live child: the orphan
/// goes to that namespace's init (the reaper search starts at the exiting
/// task's own namespace), not to the root's.
pub const REAPER_IN_OWN_NAMESPACE: Case = Case {
    script: "spawn a newns\n\
             spawn p parent=a\n\
             spawn c parent=p\n\
             exit p\n\
             wait p\n\
             exit c code=4\n\
             wait c\n\
             exit a\nwait a\n\
             check\n",
    answers: &[
        "ok a pids=1,2",
        "ok p pids=2,3",
        "ok c pids=3,4",
        "ok p exited code=0",
        "ok p code=0 pid=2 reaped_by=a",
        "ok c exited code=4",
        // Reparented to a, which sees it as pid 3.
        "ok c code=4 pid=3 reaped_by=a",
        "ok a exited code=0",
        "ok a code=0 pid=2 reaped_by=init",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// `set_tid`: taken, without the capability, out of range, too many
/// levels, and asked at two levels.
pub const SET_TID_RULES: Case = Case {
    script: "spawn x set_tid=1\n\
             spawn x set_tid=5000 nocap\n\
             spawn x set_tid=0\n\
             spawn x set_tid=40000\n\
             spawn x set_tid=1,2\n\
             spawn x set_tid=4000\n\
             spawn y set_tid=4000\n\
             spawn n newns set_tid=1,600\n\
             spawn k parent=n set_tid=9,601\n\
             exit k\nwait k\nexit n\nwait n\nexit x\nwait x\n\
             check\n",
    answers: &[
        "err EEXIST",
        "err EPERM",
        "err EINVAL",
        // Beyond pid_max (32768 by default).
        "err EINVAL",
        // More tids than levels.
        "err EINVAL",
        "ok x pids=4000",
        "err EEXIST",
        "ok n pids=1,600",
        "ok k pids=9,601",
        "ok k exited",
        // wait reports the pid as the parent's namespace sees it.
        "ok k code=0 pid=9 reaped_by=n",
        "ok n exited",
        "ok n code=0 pid=600",
        "ok x exited",
        "ok x code=0 pid=4000",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// `pid_max` is per level (6.14+): a root limited to 1000 does not limit a
/// child namespace's own numbers (its `pid_max` starts at 4194304), only
/// the root-level number each of its pids also gets. A `set_tid` that is
/// taken at the inner level and too big at the outer one is where the
/// versions differ: stock finds the inner clash first (EEXIST), the alloc
/// change the outer range first (EINVAL).
pub const PID_MAX_PER_LEVEL: Case = Case {
    script: "pid_max init 1000\n\
             spawn n newns\n\
             spawn k parent=n set_tid=5000\n\
             spawn j parent=n set_tid=6000,1500\n\
             spawn j parent=n set_tid=5000,1500\n\
             spawn j parent=n set_tid=6000,999\n\
             exit j\nwait j\nexit k\nwait k\nexit n\nwait n\n\
             check\n",
    answers: &[
        "ok pid_max=1000 in `init`'s namespace (level 0)",
        "ok n pids=1,2",
        "ok k pids=5000,3",
        // The outer level's own pid_max.
        "err EINVAL",
        // Taken inside: stock checks and allocates level by level.
        "err EEXIST",
        "ok j pids=6000,999",
        "ok j exited",
        "ok j code=0 pid=6000 reaped_by=n",
        "ok k exited",
        "ok k code=0 pid=5000 reaped_by=n",
        "ok n exited",
        "ok n code=0 pid=2",
        "ok invariants: ok",
    ],
    checks_first: &[(4, "err EINVAL")],
};

/// `wait-any` reaps in Linux's `children` order, oldest first, whatever
/// order the children exited in (b, c, a), skipping a live one; with a
/// live child left, `nohang` answers `ok none` and a blocking wait would
/// never return (`EDEADLK`); with none, `ECHILD`. The pid is the one the
/// parent's namespace sees (c is pid 1 of its own).
pub const WAIT_ANY_ORDER: Case = Case {
    script: "spawn p\n\
             spawn live parent=p\n\
             spawn a parent=p\n\
             spawn b parent=p\n\
             spawn c parent=p newns\n\
             exit b code=2\n\
             exit c code=3\n\
             exit a code=1\n\
             wait-any p\n\
             wait-any p\n\
             wait-any p\n\
             wait-any p nohang\n\
             wait-any p\n\
             exit live code=4\n\
             wait-any p nohang\n\
             wait-any p nohang\n\
             exit p\nwait p\n\
             check\n",
    answers: &[
        "ok p pids=2",
        "ok live pids=3",
        "ok a pids=4",
        "ok b pids=5",
        "ok c pids=1,6",
        "ok b exited code=2",
        "ok c exited code=3",
        "ok a exited code=1",
        "ok a code=1 pid=4",
        "ok b code=2 pid=5",
        "ok c code=3 pid=6",
        "ok none",
        "err EDEADLK",
        "ok live exited code=4",
        "ok live code=4 pid=3",
        "err ECHILD",
        "ok p exited code=0",
        "ok p code=0 pid=2 reaped_by=init",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// Orphans join the end of their reaper's `children`, in their order
/// (`list_splice_tail_init`): p's c1 and c2 come after init's own x, p
/// and y, although y is younger than both.
pub const ORPHANS_JOIN_THE_END: Case = Case {
    script: "spawn x\n\
             spawn p\n\
             spawn c1 parent=p\n\
             spawn c2 parent=p\n\
             spawn y\n\
             exit c2 code=12\n\
             exit y code=20\n\
             exit x code=10\n\
             exit c1 code=11\n\
             exit p code=1\n\
             wait-any init\n\
             wait-any init\n\
             wait-any init\n\
             wait-any init\n\
             wait-any init\n\
             wait-any init nohang\n\
             check\n",
    answers: &[
        "ok x pids=2",
        "ok p pids=3",
        "ok c1 pids=4",
        "ok c2 pids=5",
        "ok y pids=6",
        "ok c2 exited code=12",
        "ok y exited code=20",
        "ok x exited code=10",
        "ok c1 exited code=11",
        "ok p exited code=1",
        "ok x code=10 pid=2",
        "ok p code=1 pid=3",
        "ok y code=20 pid=6",
        "ok c1 code=11 pid=4",
        "ok c2 code=12 pid=5",
        "err ECHILD",
        "ok invariants: ok",
    ],
    checks_first: &[],
};

/// Waits that find nothing to reap: `wait` on a running task and
/// `wait-any ... nohang` with a live child answer `ok none` (Linux's
/// WNOHANG returns 0); no child at all is `ECHILD`, blocking or not; an
/// unknown or exited parent is `ESRCH`.
pub const NOHANG: Case = Case {
    script: "wait-any init nohang\n\
             spawn p\n\
             wait-any p nohang\n\
             wait-any p\n\
             spawn k parent=p\n\
             wait k\n\
             wait-any p nohang\n\
             wait-any p\n\
             wait-any ghost nohang\n\
             exit k code=9\n\
             wait-any p nohang\n\
             wait-any p nohang\n\
             exit p\n\
             wait-any p nohang\n\
             wait-any init nohang\n\
             wait-any init nohang\n\
             check\n",
    answers: &[
        "err ECHILD",
        "ok p pids=2",
        "err ECHILD",
        "err ECHILD",
        "ok k pids=3",
        "ok none",
        "ok none",
        "err EDEADLK",
        "err ESRCH",
        "ok k exited code=9",
        "ok k code=9 pid=3",
        "err ECHILD",
        "ok p exited code=0",
        "err ESRCH",
        "ok p code=0 pid=2",
        "err ECHILD",
        "ok invariants: ok",
    ],
    checks_first: &[],
};
