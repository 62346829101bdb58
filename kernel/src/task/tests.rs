//! Host tests of the task structure: names, references, the PID link's
//! lock-free mirror, state transitions.

use super::*;

fn noop(_: usize) {}

#[test]
fn names_truncate_at_16_bytes_on_a_char_boundary() {
    assert_eq!(TaskName::new("init").as_str(), "init");
    assert_eq!(
        TaskName::new("a-very-long-task-name").as_str(),
        "a-very-long-task"
    );
    assert_eq!(TaskName::new("ééééééééé").as_str(), "éééééééé");
}

/// Hands a reference to "the scheduler" and back, then drops both.
fn release(t: TaskRef) {
    let sched = t.clone().into_raw();
    drop(t);
    // SAFETY: `sched` came from into_raw; this takes it back.
    drop(unsafe { TaskRef::from_raw(sched) });
}

#[test]
fn last_reference_returns_task_and_stack_to_the_caches() {
    let t = Task::create("t", 0, noop, 7).unwrap();
    assert!(t.stack_intact());
    assert_eq!(t.state(), TaskState::Running);
    let (task_addr, stack_top) = (t.as_ptr(), t.stack_top());
    release(t);
    // This thread's magazine hands the same blocks back (LIFO).
    let t2 = Task::create("t2", 0, noop, 0).unwrap();
    assert_eq!(t2.as_ptr(), task_addr);
    assert_eq!(t2.stack_top(), stack_top);
    release(t2);
}

#[test]
fn own_pid_follows_the_pid_link() {
    use crate::pid::namespace::init_pid_ns;
    use crate::pid::{PidRef, PidType, alloc_pid, free_pid};
    use crate::strategy::StrategyPair;
    let t = Task::create("t", 0, noop, 0).unwrap();
    // SAFETY: `t` runs nowhere, so nothing detaches its pid meanwhile.
    assert!(unsafe { t.own_pid() }.is_none());
    let pid = alloc_pid(init_pid_ns(), &[], StrategyPair::stock(), true).unwrap();
    let mut g = write_lock_irq_tasklist();
    for ty in [PidType::Tgid, PidType::Pid] {
        assert!(t.set_pid_link(&mut g, ty, Some(pid.clone())).is_none());
    }
    // SAFETY: as above.
    let own = unsafe { t.own_pid() }.expect("the PID link is mirrored");
    assert!(PidRef::ptr_eq(&own, &pid));
    let tgid = t.set_pid_link(&mut g, PidType::Tgid, None).unwrap();
    // SAFETY: as above.
    assert!(
        unsafe { t.own_pid() }.is_some(),
        "only the PID type is mirrored"
    );
    let old = t.set_pid_link(&mut g, PidType::Pid, None).unwrap();
    // SAFETY: as above.
    assert!(unsafe { t.own_pid() }.is_none());
    drop(g);
    drop((tgid, old));
    free_pid(pid, StrategyPair::stock());
    release(t);
}

#[test]
fn transitions_are_compare_and_swap() {
    let t = Task::adopt("boot", 0).unwrap();
    assert!(t.stack_top().is_none() && t.stack_intact());
    t.set_state(TaskState::Blocked);
    assert!(t.transition(TaskState::Blocked, TaskState::Running));
    assert!(!t.transition(TaskState::Blocked, TaskState::Running));
    release(t);
}
