//! The invariant check run after anything that spawned tasks: every pid
//! freed (the root namespace back to its starting pids, no other namespace
//! alive), no task left, and the heap back where it was within what the
//! per-CPU caches may keep.

use alloc::format;
use alloc::string::String;

use crate::klib::idr::lockfree::lf_node_cache;
use crate::klib::idr::{idr_node_cache, idr_node_max_cached_bytes};
use crate::mm::heap::HEAP;
use crate::pid::namespace::{PidNsStats, init_pid_ns, nr_pid_namespaces};
use crate::pid::pid_caches;
use crate::platform;
use crate::rcu::{pending_callbacks, rcu_barrier};
use crate::task::cgroup::css_set_nr_tasks;
use crate::task::signal::signal_cache;
use crate::task::{nr_tasks, stack_cache, task_cache};

/// How long the check waits for tasks still being freed on other CPUs.
const FREE_WAIT_MS: u64 = 10_000;

/// What "back to the start" means, taken before a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Baseline {
    root: PidNsStats,
    namespaces: usize,
    tasks: usize,
    /// Tasks on the css_set's task list.
    css_tasks: u64,
    /// Tasks charged to the user's RLIMIT_NPROC and the pids cgroup.
    charged: i64,
    heap_used: usize,
}

impl Baseline {
    pub(crate) fn take() -> Self {
        Baseline {
            root: init_pid_ns().stats(),
            namespaces: nr_pid_namespaces(),
            tasks: nr_tasks(),
            css_tasks: css_set_nr_tasks(),
            charged: crate::task::shared::charged(),
            heap_used: HEAP.stats().used,
        }
    }

    /// Heap bytes the per-CPU caches may legitimately still hold (kernel
    /// stacks come from the stack region, not the heap).
    pub(crate) fn cache_bound() -> usize {
        task_cache().max_cached_bytes()
            + pid_caches()
                .iter()
                .map(|c| c.max_cached_bytes())
                .sum::<usize>()
            + idr_node_max_cached_bytes()
            + lf_node_cache().max_cached_bytes()
            + signal_cache().max_cached_bytes()
    }

    /// Checks the state against the baseline; the error names what leaked.
    /// Waits for every queued RCU callback first (pids and nodes are freed
    /// a grace period after they go).
    pub(crate) fn check(&self) -> Result<(), String> {
        rcu_barrier();
        let pending = pending_callbacks();
        if pending != 0 {
            return Err(format!(
                "{pending} RCU callbacks still queued after rcu_barrier"
            ));
        }
        let root = init_pid_ns().stats();
        if root.ids != self.root.ids || root.pid_allocated != self.root.pid_allocated {
            return Err(format!(
                "root pid namespace: {} ids, pid_allocated {:#x}; expected {} and {:#x}",
                root.ids, root.pid_allocated, self.root.ids, self.root.pid_allocated
            ));
        }
        let ns = nr_pid_namespaces();
        if ns != self.namespaces {
            return Err(format!(
                "{} pid namespaces alive, expected {} (a child namespace's pids leaked)",
                ns, self.namespaces
            ));
        }
        // A task that exited is freed by its CPU's next switch
        // (`finish_task_switch`), which may still be on its way (later
        // still if the host has not run that vCPU): wait for it, bounded,
        // as threadspawn's drain does. The wait is a scheduling point, in
        // case that CPU is this one and the task still has to run to make
        // its last switch.
        let deadline = platform::cycles() + FREE_WAIT_MS * (platform::cycles_per_sec() / 1000);
        while nr_tasks() > self.tasks && platform::cycles() < deadline {
            platform::cond_resched();
            platform::cpu_relax();
        }
        let tasks = nr_tasks();
        if tasks != self.tasks {
            return Err(format!("{} tasks alive, expected {}", tasks, self.tasks));
        }
        let charged = crate::task::shared::charged();
        if charged != self.charged {
            return Err(format!(
                "{charged} tasks charged to the user and the pids cgroup, expected {}",
                self.charged
            ));
        }
        let css = css_set_nr_tasks();
        if css != self.css_tasks {
            return Err(format!(
                "{css} tasks on the css_set, expected {}",
                self.css_tasks
            ));
        }
        let used = HEAP.stats().used;
        let bound = Self::cache_bound();
        if used > self.heap_used + bound {
            return Err(format!(
                "heap: {} bytes in use, {} at the start, caches may hold {}",
                used, self.heap_used, bound
            ));
        }
        Ok(())
    }

    /// Runs the check and prints `invariants: ok` or what leaked.
    pub(crate) fn report(&self) -> bool {
        match self.check() {
            Ok(()) => {
                println!("invariants: ok");
                true
            }
            Err(e) => {
                println!("invariants: FAILED: {e}");
                false
            }
        }
    }
}

/// Global-heap fall-throughs since boot of the caches on the spawn/reap
/// path: tasks, stacks, pids, IDR nodes.
pub(crate) fn heap_fallthroughs() -> [u64; 4] {
    [
        task_cache().stats().heap_allocs,
        stack_cache().stats().heap_allocs,
        pid_caches()
            .iter()
            .map(|c| c.stats().heap_allocs)
            .sum::<u64>(),
        idr_node_cache().stats().heap_allocs,
    ]
}
