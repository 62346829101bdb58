//! Where threadspawn's new threads run (`placement=`).
//!
//! will-it-scale binds each worker to a core before it forks it
//! (`hwloc_set_cpubind` in `main.c`, in the parent, around `fork()`), and
//! `dup_task_struct()` copies the binding into every thread the worker
//! makes: in `threadspawn1_processes` a thread is created, runs, exits and
//! is released on its creator's core (on its CPU, without SMT siblings, as
//! in a VM). [`Placement::Same`], the default, does that. An unbound
//! thread would instead be placed by `wake_up_new_task()` ->
//! `select_task_rq()` (fork balancing) on an idle CPU when there is one,
//! and exit and be released there, overlapping its creator's next fork:
//! [`Placement::Spread`]. Tasks never migrate here, so a placement is
//! decided once, at creation: `copy_process` builds the task on the chosen
//! CPU's run queue and the wake IPI reaches that CPU if it is halted.
//!
//! [`Placement::Spread`] chooses, for worker `i` on CPU `i` of `workers`,
//! among the CPUs that run no worker (or, when every CPU runs one, among
//! the other CPUs), as `select_idle_sibling()` would: the CPU it used last
//! if that one is idle now, else the next idle one after it, else simply
//! the next one in turn. Workers start at different candidates. "Idle"
//! is the scheduler's may-be-halted flag, one cache line per CPU read per
//! candidate looked at. [`Placement::Same`] keeps each thread on its
//! creator's CPU.

/// How threadspawn places each new thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On another CPU than its creator's: an idle one if any (an unbound
    /// thread on Linux).
    Spread,
    /// On its creator's CPU (will-it-scale's binding: the default).
    Same,
}

impl Placement {
    /// Both, with their `placement=` names; the default first.
    pub(crate) const ALL: [(&'static str, Placement); 2] =
        [("same", Placement::Same), ("spread", Placement::Spread)];

    /// The name `placement=` uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Placement::Spread => "spread",
            Placement::Same => "same",
        }
    }

    /// The placement called `name`.
    pub(crate) fn by_name(name: &str) -> Option<Placement> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}

/// One worker's choice of CPU for each thread it creates.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
#[derive(Clone, Debug)]
pub(crate) struct Placer {
    /// First CPU of the candidates and how many there are.
    first: usize,
    count: usize,
    /// Index of the candidate used last.
    last: usize,
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl Placer {
    /// For the worker on CPU `own`, with workers on CPUs `0..workers` of
    /// `online`.
    pub(crate) fn new(placement: Placement, own: usize, workers: usize, online: usize) -> Self {
        debug_assert!(own < workers && workers <= online);
        let (first, count, last) = match placement {
            Placement::Same => (own, 1, 0),
            // The CPUs without a worker, worker i starting at the i-th.
            Placement::Spread if online > workers => {
                let idle = online - workers;
                (workers, idle, own % idle)
            }
            // Every CPU runs a worker: the others, from the next one on.
            Placement::Spread if online > 1 => (own + 1, online - 1, 0),
            Placement::Spread => (own, 1, 0),
        };
        Placer { first, count, last }
    }

    /// The CPU for the next thread; `idle(cpu)` says whether a CPU is idle
    /// now.
    #[inline]
    pub(crate) fn next_cpu(&mut self, online: usize, idle: impl Fn(usize) -> bool) -> usize {
        if self.count > 1 {
            let count = self.count;
            let wrap = |i: usize| if i >= count { i - count } else { i };
            self.last = (0..count)
                .map(|k| wrap(self.last + k))
                .find(|&i| idle(self.cpu(i, online)))
                .unwrap_or_else(|| wrap(self.last + 1));
        }
        self.cpu(self.last, online)
    }

    /// The CPU of candidate `i`; candidates past the last CPU wrap to the
    /// ones before the worker's own.
    fn cpu(&self, i: usize, online: usize) -> usize {
        let cpu = self.first + i;
        if cpu >= online { cpu - online } else { cpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `n` choices when no CPU is ever idle (round-robin).
    fn first_n(p: Placement, own: usize, workers: usize, online: usize, n: usize) -> Vec<usize> {
        let mut pl = Placer::new(p, own, workers, online);
        (0..n).map(|_| pl.next_cpu(online, |_| false)).collect()
    }

    #[test]
    fn names_round_trip() {
        for (name, p) in Placement::ALL {
            assert_eq!(Placement::by_name(name), Some(p));
            assert_eq!(p.name(), name);
        }
        assert_eq!(Placement::by_name("numa"), None);
    }

    #[test]
    fn same_keeps_the_creator_cpu() {
        assert_eq!(first_n(Placement::Same, 3, 4, 8, 3), [3, 3, 3]);
    }

    #[test]
    fn spread_uses_the_cpus_without_workers_in_turn() {
        // One worker on 2 CPUs: always CPU 1.
        assert_eq!(first_n(Placement::Spread, 0, 1, 2, 3), [1, 1, 1]);
        // One worker on 8, none idle: CPUs 2..=7, then 1, in turn.
        assert_eq!(
            first_n(Placement::Spread, 0, 1, 8, 8),
            [2, 3, 4, 5, 6, 7, 1, 2]
        );
        // Two workers on 8: each starts at a different candidate.
        assert_eq!(first_n(Placement::Spread, 0, 2, 8, 3), [3, 4, 5]);
        assert_eq!(first_n(Placement::Spread, 1, 2, 8, 3), [4, 5, 6]);
        // Four of eight: candidates 4..=7, worker 3 starts at 7.
        assert_eq!(first_n(Placement::Spread, 3, 4, 8, 2), [4, 5]);
    }

    #[test]
    fn spread_with_a_worker_everywhere_uses_the_other_cpus() {
        assert_eq!(first_n(Placement::Spread, 0, 2, 2, 3), [1, 1, 1]);
        assert_eq!(first_n(Placement::Spread, 1, 2, 2, 3), [0, 0, 0]);
        assert_eq!(first_n(Placement::Spread, 2, 4, 4, 4), [0, 1, 3, 0]);
        for own in 0..8 {
            let cpus = first_n(Placement::Spread, own, 8, 8, 14);
            assert!(cpus.iter().all(|&c| c != own && c < 8), "{own}: {cpus:?}");
        }
    }

    #[test]
    fn spread_prefers_the_last_cpu_while_idle_then_the_next_idle_one() {
        let mut pl = Placer::new(Placement::Spread, 0, 1, 8);
        // Everything idle: CPU 1, again and again.
        assert_eq!(pl.next_cpu(8, |_| true), 1);
        assert_eq!(pl.next_cpu(8, |_| true), 1);
        // CPU 1 still busy releasing: the next idle one, skipping busy 2.
        assert_eq!(pl.next_cpu(8, |c| c != 1 && c != 2), 3);
        assert_eq!(pl.next_cpu(8, |c| c == 3 || c == 1), 3);
        // None idle: the next in turn.
        assert_eq!(pl.next_cpu(8, |_| false), 4);
        // Worker CPUs are never candidates, idle or not.
        let mut pl = Placer::new(Placement::Spread, 1, 4, 8);
        assert_eq!(pl.next_cpu(8, |c| c < 4 || c == 7), 7);
        let mut pl = Placer::new(Placement::Same, 1, 4, 8);
        assert_eq!(pl.next_cpu(8, |c| c != 1), 1);
    }

    #[test]
    fn spread_on_one_cpu_stays_there() {
        assert_eq!(first_n(Placement::Spread, 0, 1, 1, 2), [0, 0]);
    }
}
