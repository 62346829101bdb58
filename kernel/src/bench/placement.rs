//! Where threadspawn's new threads run (`placement=`).
//!
//! On Linux, `wake_up_new_task()` places a new thread with
//! `select_task_rq()` (fork balancing): an idle CPU when there is one. So a
//! thread usually exits and is released on another CPU than its creator,
//! overlapping the creator's next fork. Tasks never migrate here, so a
//! placement is decided once, at creation: `copy_process` builds the task
//! on the chosen CPU's run queue and the wake IPI reaches that CPU if it is
//! halted.
//!
//! [`Placement::Spread`] picks, for worker `i` on CPU `i` of `workers`, the
//! CPUs that run no worker (those idle but for the threads sent there) in
//! turn, starting at a different one per worker; when every CPU runs a
//! worker, the other CPUs in turn. [`Placement::Same`] keeps each thread on
//! its creator's CPU. The choice reads no shared state: it costs the spawn
//! loop an add and a compare.

/// How threadspawn places each new thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On another CPU than its creator's: an idle one if any (the default).
    Spread,
    /// On its creator's CPU.
    Same,
}

impl Placement {
    /// Both, with their `placement=` names; the default first.
    pub const ALL: [(&'static str, Placement); 2] =
        [("spread", Placement::Spread), ("same", Placement::Same)];

    /// The name `placement=` uses.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Spread => "spread",
            Placement::Same => "same",
        }
    }

    /// The placement called `name`.
    pub fn by_name(name: &str) -> Option<Placement> {
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
    /// Index of the next candidate.
    next: usize,
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal benchmark
impl Placer {
    /// For the worker on CPU `own`, with workers on CPUs `0..workers` of
    /// `online`.
    pub(crate) fn new(placement: Placement, own: usize, workers: usize, online: usize) -> Self {
        debug_assert!(own < workers && workers <= online);
        let (first, count, next) = match placement {
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
        Placer { first, count, next }
    }

    /// The CPU for the next thread.
    #[inline]
    pub(crate) fn next_cpu(&mut self, online: usize) -> usize {
        let i = self.next;
        self.next = if i + 1 == self.count { 0 } else { i + 1 };
        let cpu = self.first + i;
        // Candidates past the last CPU wrap to the ones before `own`.
        if cpu >= online { cpu - online } else { cpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_n(p: Placement, own: usize, workers: usize, online: usize, n: usize) -> Vec<usize> {
        let mut pl = Placer::new(p, own, workers, online);
        (0..n).map(|_| pl.next_cpu(online)).collect()
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
        // One worker on 8: CPUs 1..=7 in turn.
        assert_eq!(
            first_n(Placement::Spread, 0, 1, 8, 8),
            [1, 2, 3, 4, 5, 6, 7, 1]
        );
        // Two workers on 8: each starts at a different idle CPU.
        assert_eq!(first_n(Placement::Spread, 0, 2, 8, 3), [2, 3, 4]);
        assert_eq!(first_n(Placement::Spread, 1, 2, 8, 3), [3, 4, 5]);
        // Four of eight: idle CPUs 4..=7, worker 3 starts at 7.
        assert_eq!(first_n(Placement::Spread, 3, 4, 8, 2), [7, 4]);
    }

    #[test]
    fn spread_with_a_worker_everywhere_uses_the_other_cpus() {
        assert_eq!(first_n(Placement::Spread, 0, 2, 2, 3), [1, 1, 1]);
        assert_eq!(first_n(Placement::Spread, 1, 2, 2, 3), [0, 0, 0]);
        assert_eq!(first_n(Placement::Spread, 2, 4, 4, 4), [3, 0, 1, 3]);
        for own in 0..8 {
            let cpus = first_n(Placement::Spread, own, 8, 8, 14);
            assert!(cpus.iter().all(|&c| c != own && c < 8), "{own}: {cpus:?}");
        }
    }

    #[test]
    fn spread_on_one_cpu_stays_there() {
        assert_eq!(first_n(Placement::Spread, 0, 1, 1, 2), [0, 0]);
    }
}
