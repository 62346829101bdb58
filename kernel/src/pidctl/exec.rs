//! pidctl's executor: runs parsed commands against live tasks.
//!
//! Every task pidctl spawns is a *puppet*: a process whose body waits for
//! requests in its mailbox and carries them out itself, so that what Linux
//! does in the context of a task happens in that task here too: `spawn
//! ... parent=P` makes P call `copy_process` (P becomes the parent, its
//! namespace the child's), `wait NAME` makes NAME's parent reap it,
//! `wait-any P` makes P reap its first exited child in Linux's order,
//! `exit NAME` makes NAME call `do_exit`. `init` is the console task
//! itself (pid 1 of the root namespace), except under
//! `strategy=lockless`: its namespaces must be lock-free, so pidctl builds
//! a lock-free root whose pid 1 is a puppet named `init`, and tears it
//! down at the end. All of them run on the boot CPU.
//!
//! Each command is answered with exactly one line: `ok ...` or
//! `err <ERRNO> <message>`. Every wait is Linux's WNOHANG underneath: only
//! an `exit` command makes a task exit, and none can run while the script
//! waits, so a wait that would block answers at once (`ok none`, or for a
//! blocking `wait-any`, `EDEADLK`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::klib::errno::Errno;
use crate::pid::namespace::{PidNamespace, PidNsStats};
use crate::pid::{PidType, find_pid_ns, pid_nr_ns};
use crate::selftest::invariants::Baseline;
use crate::strategy::StrategyPair;
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::sched;
use crate::task::wait::{Reaped, wait_child, wait_child_nohang};
use crate::task::{Task, TaskRef, TaskState};
use crate::task::{read_lock_tasklist, task_pid};

use super::parse::{COMMANDS, Command, SpawnCmd, parse};

/// What a puppet is asked to do.
enum Req {
    Spawn(SpawnReq),
    Wait(TaskRef),
    WaitAny,
    Exit(i32),
}

#[derive(Clone)]
struct SpawnReq {
    name: String,
    newns: bool,
    set_tid: Vec<i32>,
    nocap: bool,
    version: &'static StrategyPair,
}

type Reply = Result<ReplyOk, Errno>;

enum ReplyOk {
    Spawned(TaskRef, Arc<Mailbox>),
    Reaped(Reaped),
    /// A WNOHANG wait found children, none exited (Linux returns 0).
    NotYet,
    /// A puppet asked to exit (it does not reply).
    Exited,
}

/// A puppet's request slot and reply slot.
pub(crate) struct Mailbox {
    req: SpinLockIrqSave<Option<Req>>,
    reply: SpinLockIrqSave<Option<Reply>>,
}

impl Mailbox {
    fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox {
            req: named_spin_lock_irqsave("pidctl.mailbox", None),
            reply: named_spin_lock_irqsave("pidctl.mailbox", None),
        })
    }
}

/// Spawns a puppet as a child of the current task (in `ns` if given).
fn spawn_here(r: &SpawnReq, ns: Option<&Arc<PidNamespace>>) -> Reply {
    let mb = Mailbox::new();
    let mut args = CloneArgs::new(&r.name, puppet_main, Arc::as_ptr(&mb) as usize);
    args.pid_ns = ns;
    args.newns = r.newns;
    args.set_tid = &r.set_tid;
    args.cap = !r.nocap;
    args.strategy = r.version;
    // The puppet's own reference to its mailbox, taken back when it exits.
    let raw = Arc::into_raw(mb.clone());
    match copy_process(&args) {
        Ok(t) => Ok(ReplyOk::Spawned(t, mb)),
        Err(e) => {
            // SAFETY: the reference given up just above; no task got it.
            drop(unsafe { Arc::from_raw(raw) });
            Err(e)
        }
    }
}

/// `wait4(child or -1, .., WNOHANG)` by the current task.
fn wait_here(child: Option<&Task>) -> Reply {
    match wait_child_nohang(child)? {
        Some(r) => Ok(ReplyOk::Reaped(r)),
        None => Ok(ReplyOk::NotYet),
    }
}

fn puppet_main(arg: usize) {
    // SAFETY: `arg` is the reference spawn_here gave up for us.
    let mb = unsafe { Arc::from_raw(arg as *const Mailbox) };
    loop {
        sched::block_until(|| mb.req.lock().is_some());
        let Some(req) = mb.req.lock().take() else {
            continue;
        };
        let reply = match req {
            Req::Spawn(r) => spawn_here(&r, None),
            Req::Wait(child) => wait_here(Some(&child)),
            Req::WaitAny => wait_here(None),
            Req::Exit(code) => {
                drop(mb);
                sched::exit_current(code);
            }
        };
        *mb.reply.lock() = Some(reply);
    }
}

/// One pidctl task.
struct Entry {
    name: String,
    task: TaskRef,
    /// None for init (the console task itself).
    mailbox: Option<Arc<Mailbox>>,
}

/// The lock-free root pidctl builds for `strategy=lockless`.
struct LockFreeRoot {
    ns: Arc<PidNamespace>,
    /// Its id space with only its init in it.
    start: PidNsStats,
    /// Taken before it was built: what tearing it down returns to.
    outer: Baseline,
}

/// The console: known tasks by name.
pub(crate) struct Pidctl {
    entries: Vec<Entry>,
    baseline: Baseline,
    /// The kernel version the tasks it spawns run.
    version: &'static StrategyPair,
    lockfree: Option<LockFreeRoot>,
}

impl Pidctl {
    /// A console whose `init` is the current task and whose tasks run
    /// kernel `version`'s fork, exit and release.
    pub(crate) fn new(version: &'static StrategyPair) -> Result<Self, Errno> {
        println!(
            "pidctl: tasks run {} (Linux {}) (strategy=)",
            version.name, version.kernel
        );
        let mut lockfree = None;
        let init = if version.lockless() {
            let outer = Baseline::take();
            let ns = PidNamespace::new_root_lockless();
            let req = SpawnReq {
                name: String::from("init"),
                newns: false,
                set_tid: Vec::new(),
                nocap: false,
                version,
            };
            let Ok(ReplyOk::Spawned(task, mb)) = spawn_here(&req, Some(&ns)) else {
                return Err(Errno::ENOMEM);
            };
            println!(
                "pidctl: init is pid 1 of a lock-free root namespace (the lockless strategy allocates only there)"
            );
            lockfree = Some(LockFreeRoot {
                start: ns.stats(),
                ns,
                outer,
            });
            Entry {
                name: String::from("init"),
                task,
                mailbox: Some(mb),
            }
        } else {
            Entry {
                name: String::from("init"),
                task: sched::current_ref(),
                mailbox: None,
            }
        };
        Ok(Pidctl {
            version,
            entries: alloc::vec![init],
            baseline: Baseline::take(),
            lockfree,
        })
    }

    fn find(&self, name: &str) -> Result<usize, (Errno, String)> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| (Errno::ESRCH, format!("no task named `{name}`")))
    }

    /// Has the task of `who` carry out `req`, returning its reply (init
    /// does it directly).
    fn ask(&self, who: usize, req: Req) -> Reply {
        let e = &self.entries[who];
        let Some(mb) = &e.mailbox else {
            return match req {
                Req::Spawn(r) => spawn_here(&r, None),
                Req::Wait(c) => wait_here(Some(&c)),
                Req::WaitAny => wait_here(None),
                Req::Exit(_) => Err(Errno::EPERM),
            };
        };
        let exiting = matches!(req, Req::Exit(_));
        *mb.req.lock() = Some(req);
        sched::wake_up_process(&e.task);
        if exiting {
            // It exits instead of replying; let it run until it has.
            while !matches!(e.task.state(), TaskState::Zombie | TaskState::Dead) {
                sched::yield_now();
            }
            return Ok(ReplyOk::Exited);
        }
        loop {
            if let Some(r) = mb.reply.lock().take() {
                return r;
            }
            sched::yield_now();
        }
    }

    /// Runs one line and returns the one-line answer.
    pub(crate) fn run_line(&mut self, line: &str) -> Option<String> {
        let cmd = match parse(line) {
            Ok(None) => return None,
            Ok(Some(c)) => c,
            Err(e) => return Some(format!("err EINVAL {e}")),
        };
        Some(match self.run(cmd) {
            Ok(s) => format!("ok {s}"),
            Err((e, msg)) => format!("err {} {msg}", e.name()),
        })
    }

    /// `spawn`: a new puppet, child of `s.parent` (init by default).
    fn spawn(&mut self, s: SpawnCmd<'_>) -> Result<String, (Errno, String)> {
        if self.find(s.name).is_ok() {
            return Err((Errno::EEXIST, format!("a task named `{}` exists", s.name)));
        }
        let parent = self.find(s.parent.unwrap_or("init"))?;
        if self.entries[parent].task.state() == TaskState::Zombie {
            return Err((
                Errno::ESRCH,
                format!("`{}` has exited", self.entries[parent].name),
            ));
        }
        let req = SpawnReq {
            name: String::from(s.name),
            newns: s.newns,
            set_tid: s.set_tid.as_slice().to_vec(),
            nocap: s.nocap,
            version: self.version,
        };
        match self.ask(parent, Req::Spawn(req)) {
            Ok(ReplyOk::Spawned(task, mb)) => {
                let pids = pids_innermost_first(&task);
                self.entries.push(Entry {
                    name: String::from(s.name),
                    task,
                    mailbox: Some(mb),
                });
                Ok(format!("{} pids={pids}", s.name))
            }
            Ok(_) => unreachable!("spawn replies Spawned"),
            Err(e) => Err((e, String::from("spawn failed"))),
        }
    }

    /// `wait-any`: `parent` reaps its first exited child in Linux's order
    /// (its own children oldest first; pidctl's tasks have no threads).
    fn wait_any(&mut self, parent: &str, nohang: bool) -> Result<String, (Errno, String)> {
        let p = self.find(parent)?;
        if self.entries[p].task.state() == TaskState::Zombie {
            return Err((Errno::ESRCH, format!("`{parent}` has exited")));
        }
        match self.ask(p, Req::WaitAny) {
            Ok(ReplyOk::Reaped(r)) => {
                // The entry holds a reference, so the pointer names it.
                let name = match self.entries.iter().position(|e| r.is(&e.task)) {
                    Some(i) => self.entries.remove(i).name,
                    // A child pidctl did not spawn: init has none at
                    // start, but say so rather than guess.
                    None => String::from("?"),
                };
                Ok(format!("{name} code={} pid={}", r.code, r.nr))
            }
            Ok(ReplyOk::NotYet) if nohang => Ok(String::from("none")),
            // Linux would block; nothing can exit while the script waits.
            Ok(ReplyOk::NotYet) => Err((
                Errno::EDEADLK,
                format!(
                    "`{parent}` has children and none has exited: the wait would block the script (`nohang` answers `ok none`)"
                ),
            )),
            Ok(_) => unreachable!("wait replies Reaped or NotYet"),
            Err(Errno::ECHILD) => Err((Errno::ECHILD, format!("`{parent}` has no children"))),
            Err(e) => Err((e, String::from("wait failed"))),
        }
    }

    fn run(&mut self, cmd: Command<'_>) -> Result<String, (Errno, String)> {
        match cmd {
            Command::Spawn(s) => self.spawn(s),
            Command::Exit { name, code } => {
                let i = self.find(name)?;
                if i == 0 {
                    return Err((Errno::EPERM, String::from("init does not exit")));
                }
                if self.entries[i].task.state() != TaskState::Blocked
                    && self.entries[i].task.state() != TaskState::Running
                {
                    return Err((Errno::ESRCH, format!("`{name}` has already exited")));
                }
                let _ = self.ask(i, Req::Exit(code));
                Ok(format!("{name} exited code={code}"))
            }
            Command::Wait { name } => {
                let i = self.find(name)?;
                if i == 0 {
                    return Err((Errno::ECHILD, String::from("init has no parent")));
                }
                let child = self.entries[i].task.clone();
                // Its parent now (it may have been reparented).
                let parent_ptr = {
                    let g = read_lock_tasklist();
                    child.links(&g).parent
                };
                let Some(p) = self
                    .entries
                    .iter()
                    .position(|e| core::ptr::eq(e.task.as_ptr(), parent_ptr))
                else {
                    return Err((
                        Errno::ECHILD,
                        format!("`{name}` has no parent pidctl knows"),
                    ));
                };
                match self.ask(p, Req::Wait(child)) {
                    Ok(ReplyOk::Reaped(r)) => {
                        self.entries.remove(i);
                        Ok(format!(
                            "{name} code={} pid={} reaped_by={}",
                            r.code,
                            r.nr,
                            self.entries[if p > i { p - 1 } else { p }].name
                        ))
                    }
                    // waitpid(pid, WNOHANG) on a live child returns 0.
                    Ok(ReplyOk::NotYet) => Ok(String::from("none")),
                    Ok(_) => unreachable!("wait replies Reaped or NotYet"),
                    Err(e) => Err((e, String::from("wait failed"))),
                }
            }
            Command::WaitAny { parent, nohang } => self.wait_any(parent, nohang),
            Command::PidMax { name, max } => {
                let i = self.find(name)?;
                let Some(pid) = task_pid(&self.entries[i].task, PidType::Pid) else {
                    return Err((Errno::ESRCH, format!("`{name}` has no pid")));
                };
                let max = i32::try_from(max).unwrap_or(-1);
                pid.ns()
                    .set_pid_max(max)
                    .map(|()| {
                        format!(
                            "pid_max={max} in `{name}`'s namespace (level {})",
                            pid.level()
                        )
                    })
                    .map_err(|e| (e, String::from("pid_max must be 301..=4194304")))
            }
            Command::Ps => {
                let mut s = format!("{} tasks:", self.entries.len());
                for e in &self.entries {
                    let state = match e.task.state() {
                        TaskState::Zombie => "zombie",
                        TaskState::Dead => "dead",
                        _ => "alive",
                    };
                    let _ = write!(
                        s,
                        " {}[{}]{}",
                        e.name,
                        pids_innermost_first(&e.task),
                        if state == "alive" { "" } else { state }
                    );
                }
                Ok(s)
            }
            Command::Check => self.check().map_err(|m| (Errno::EIO, m)),
        }
    }

    /// Every known task's pid is found at every level with its own number,
    /// and when only init is left, the full invariant check.
    pub(crate) fn check(&self) -> Result<String, String> {
        for e in &self.entries {
            let Some(pid) = task_pid(&e.task, PidType::Pid) else {
                return Err(format!("`{}` has no pid", e.name));
            };
            for upid in pid.numbers() {
                match find_pid_ns(upid.nr, upid.ns()) {
                    Some(found) if crate::pid::PidRef::ptr_eq(&found, &pid) => {}
                    _ => {
                        return Err(format!(
                            "`{}`: pid {} at level {} is not found in its namespace",
                            e.name,
                            upid.nr,
                            upid.ns().level()
                        ));
                    }
                }
                if pid_nr_ns(&pid, upid.ns()) != upid.nr {
                    return Err(format!("`{}`: pid_nr_ns disagrees", e.name));
                }
            }
        }
        if self.entries.len() == 1 {
            self.baseline.check()?;
            if let Some(lf) = &self.lockfree {
                let now = lf.ns.stats();
                if now.ids != lf.start.ids || now.pid_allocated != lf.start.pid_allocated {
                    return Err(format!(
                        "lock-free root: {} ids, pid_allocated {:#x}; expected {} and {:#x}",
                        now.ids, now.pid_allocated, lf.start.ids, lf.start.pid_allocated
                    ));
                }
            }
            Ok(String::from("invariants: ok"))
        } else {
            Ok(format!(
                "{} tasks consistent (full check once only init is left)",
                self.entries.len()
            ))
        }
    }

    /// Tasks besides init still known.
    pub(crate) fn live(&self) -> usize {
        self.entries.len() - 1
    }
}

fn pids_innermost_first(t: &Task) -> String {
    match task_pid(t, PidType::Pid) {
        Some(pid) => {
            let v: Vec<String> = pid
                .numbers()
                .iter()
                .rev()
                .map(|u| format!("{}", u.nr))
                .collect();
            v.join(",")
        }
        None => String::from("-"),
    }
}

/// Runs a whole script, printing each answer; then the invariant check
/// if every spawned task was reaped.
pub(crate) fn run_script(text: &str, version: &'static StrategyPair) -> bool {
    let Some(mut ctl) = start(version) else {
        return false;
    };
    for line in text.lines() {
        if let Some(answer) = ctl.run_line(line) {
            println!("{answer}");
        }
    }
    finish(ctl)
}

fn start(version: &'static StrategyPair) -> Option<Pidctl> {
    match Pidctl::new(version) {
        Ok(ctl) => Some(ctl),
        Err(e) => {
            println!("pidctl: cannot start: {}", e.name());
            None
        }
    }
}

/// The invariant check once every task is reaped; a lock-free root is
/// checked, its init reaped and the whole kernel checked against the
/// state before it was built.
fn finish(mut ctl: Pidctl) -> bool {
    if ctl.live() > 0 {
        println!(
            "pidctl: done with {} tasks still alive (reap them for the invariant check)",
            ctl.live()
        );
        return true;
    }
    let Some(lf) = ctl.lockfree.take() else {
        return ctl.baseline.report();
    };
    if let Err(e) = ctl.check() {
        println!("invariants: FAILED: {e}");
        return false;
    }
    let init = ctl.entries.remove(0);
    if let Some(mb) = &init.mailbox {
        *mb.req.lock() = Some(Req::Exit(0));
        sched::wake_up_process(&init.task);
    }
    if let Err(e) = wait_child(Some(&init.task)) {
        println!("invariants: FAILED: reaping the lock-free root's init: {e:?}");
        return false;
    }
    drop(init);
    drop(lf.ns);
    lf.outer.report()
}

/// The interactive shell on the serial console: one command per line until
/// `quit` (or end of input, a Ctrl-D).
pub(crate) fn run_shell(version: &'static StrategyPair) -> bool {
    let Some(mut ctl) = start(version) else {
        return false;
    };
    println!("pidctl shell: commands {COMMANDS}, quit to stop");
    let mut line = String::new();
    loop {
        let b = loop {
            if let Some(b) = crate::arch::serial::try_read_byte() {
                break b;
            }
            // Polling for input is not being stuck.
            crate::platform::cond_resched();
            core::hint::spin_loop();
        };
        match b {
            b'\r' | b'\n' => {
                let l = core::mem::take(&mut line);
                if l.trim() == "quit" {
                    break;
                }
                if let Some(answer) = ctl.run_line(&l) {
                    println!("{answer}");
                }
            }
            4 => break,
            0x20..=0x7e if line.len() < 256 => line.push(b as char),
            _ => {}
        }
    }
    finish(ctl)
}
