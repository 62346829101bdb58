//! A host model of pidctl: the answer each command should get, from
//! DESIGN.md's rules written down plainly over sets and lists.
//!
//! It follows the kernel's pid model test (`kernel/src/pid/tests.rs`) for
//! `alloc_pid` (errno order, cyclic allocation from the cursor, the wrap to
//! `RESERVED_PIDS`, rollback) and pidctl's executor for the rest: names,
//! zombies, reaping by the parent, and reparenting to the nearest live
//! namespace init when a task exits. Each parent's children are in
//! Linux's `children` order: by spawn, orphans appended to their reaper's
//! list in their order when they move; `wait-any` takes the first zombie
//! in it (pidctl's tasks have no threads, so a wait scans one list).
//! Nothing is random inside the kernel when pidctl drives it (one command
//! at a time, no fault injection), so the model predicts every `ok` answer
//! exactly, pid numbers after a wrap included; `err` answers are predicted
//! by errno, their prose is the kernel's own.

mod cmd;

use std::collections::BTreeSet;
use std::fmt;

pub use cmd::{Cmd, Spawn};

/// Deepest namespace level (`MAX_PID_NS_LEVEL`).
pub const MAX_PID_NS_LEVEL: u32 = 32;
/// `pid_max` of the root namespace at boot (a child namespace starts at
/// `PID_MAX_LIMIT`, as in Linux 6.14+).
pub const PID_MAX_DEFAULT: i32 = 32768;
/// The range `pid_max` may be set to.
pub const PID_MAX_MIN: i32 = 301;
pub const PID_MAX_LIMIT: i32 = 4 * 1024 * 1024;
/// After the cursor passes this, cyclic allocation wraps to it, not to 1.
pub const RESERVED_PIDS: u32 = 300;
const PIDNS_ADDING: u32 = 1 << 31;

/// What the kernel should answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The whole line after `ok `.
    Ok(String),
    /// The errno's name (the message after it is not predicted).
    Err(&'static str),
}

impl Answer {
    /// Whether the kernel's answer line agrees.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Answer::Ok(text) => line.strip_prefix("ok ") == Some(text.as_str()),
            Answer::Err(errno) => line
                .strip_prefix("err ")
                .and_then(|rest| rest.strip_prefix(errno))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')),
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Ok(text) => write!(f, "ok {text}"),
            Answer::Err(errno) => write!(f, "err {errno} ..."),
        }
    }
}

/// A pid namespace.
#[derive(Clone, Debug)]
pub struct Ns {
    pub level: u32,
    pub parent: Option<usize>,
    pub pid_max: i32,
    /// The task that got pid 1 here; kept after it dies, as the kernel does.
    reaper: Option<u64>,
    /// Numbers in use.
    pub ids: BTreeSet<u32>,
    cursor: u32,
    pid_allocated: u32,
    /// Cyclic allocations that found their number below the cursor.
    pub wraps: u32,
}

impl Ns {
    fn new(level: u32, parent: Option<usize>, pid_max: i32) -> Ns {
        Ns {
            level,
            parent,
            pid_max,
            reaper: None,
            ids: BTreeSet::new(),
            cursor: 0,
            pid_allocated: PIDNS_ADDING,
            wraps: 0,
        }
    }

    /// Whether `alloc_pid` may publish pids here (its init has not exited).
    pub fn accepts_pids(&self) -> bool {
        self.pid_allocated & PIDNS_ADDING != 0
    }

    fn first_free(&self, from: u32, max: u32) -> Option<u32> {
        (from..=max).find(|id| !self.ids.contains(id))
    }

    /// `alloc_nr` for a cyclic number: from the cursor up to `pid_max - 1`,
    /// then once more from `pid_min` (1, or `RESERVED_PIDS` once the cursor
    /// has passed it).
    fn next_cyclic(&self, pid_max: i32) -> Option<u32> {
        let max = pid_max as u32 - 1;
        let pid_min = if self.cursor > RESERVED_PIDS {
            RESERVED_PIDS
        } else {
            1
        };
        let from = self.cursor.max(pid_min);
        self.first_free(from, max).or_else(|| {
            if from > pid_min {
                self.first_free(pid_min, max)
            } else {
                None
            }
        })
    }
}

/// A task pidctl knows.
#[derive(Clone, Debug)]
pub struct Task {
    id: u64,
    pub name: String,
    /// `None` for init.
    parent: Option<u64>,
    pub zombie: bool,
    code: i32,
    /// Its place on its parent's `children` list (smaller is older).
    order: u64,
    /// `(namespace, number)`, innermost level first.
    pub pids: Vec<(usize, u32)>,
}

impl Task {
    /// Its own (innermost) namespace.
    pub fn ns(&self) -> usize {
        self.pids[0].0
    }

    fn pids_text(&self) -> String {
        let nrs: Vec<String> = self.pids.iter().map(|(_, nr)| nr.to_string()).collect();
        nrs.join(",")
    }
}

/// The kernel as pidctl sees it.
#[derive(Clone, Debug)]
pub struct Model {
    /// Whether `alloc_pid` is the alloc change's (`pidmap-once`, `both`):
    /// every level's `set_tid` checks before any number is taken, where
    /// stock checks each level just before taking its number.
    pub checks_first: bool,
    pub ns: Vec<Ns>,
    /// In the order pidctl lists them (init first, reaped ones removed).
    pub tasks: Vec<Task>,
    next_id: u64,
    /// The next place at the tail of a `children` list.
    next_order: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// The strategies (`strategy=`) whose `alloc_pid` is the alloc change.
pub const CHECKS_FIRST: [&str; 4] = ["pidmap-once", "both", "v7.0", "lockless"];

impl Model {
    /// Right after boot, running stock's `alloc_pid`: init has pid 1 in the
    /// root namespace.
    pub fn new() -> Model {
        Self::for_strategy("stock")
    }

    /// As [`new`](Self::new), for pidctl's `strategy=NAME`.
    pub fn for_strategy(name: &str) -> Model {
        let mut root = Ns::new(0, None, PID_MAX_DEFAULT);
        root.ids.insert(1);
        root.cursor = 2;
        root.pid_allocated += 1;
        root.reaper = Some(0);
        Model {
            checks_first: CHECKS_FIRST.contains(&name),
            ns: vec![root],
            tasks: vec![Task {
                id: 0,
                name: "init".into(),
                parent: None,
                zombie: false,
                code: 0,
                order: 0,
                pids: vec![(0, 1)],
            }],
            next_id: 1,
            next_order: 1,
        }
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.name == name)
    }

    fn by_id(&self, id: u64) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }

    /// Runs one command: its answer.
    pub fn run(&mut self, cmd: &Cmd) -> Answer {
        match self.apply(cmd) {
            Ok(text) => Answer::Ok(text),
            Err(errno) => Answer::Err(errno),
        }
    }

    fn apply(&mut self, cmd: &Cmd) -> Result<String, &'static str> {
        match cmd {
            // One tid per level at most: pidctl's parser refuses a longer
            // list before anything else is looked at.
            Cmd::Spawn(s) if s.set_tid.len() > MAX_PID_NS_LEVEL as usize + 1 => Err("EINVAL"),
            Cmd::Spawn(s) => self.spawn(
                &s.name,
                s.parent.as_deref().unwrap_or("init"),
                s.newns,
                &s.set_tid,
                !s.nocap,
            ),
            Cmd::Exit { name, code } => {
                let i = self.find(name).ok_or("ESRCH")?;
                if i == 0 {
                    return Err("EPERM");
                }
                if self.tasks[i].zombie {
                    return Err("ESRCH");
                }
                let code = code.unwrap_or(0);
                self.exit(i, code);
                Ok(format!("{name} exited code={code}"))
            }
            Cmd::Wait { name } => {
                let i = self.find(name).ok_or("ESRCH")?;
                let parent = self.tasks[i].parent.ok_or("ECHILD")?;
                let p = self.by_id(parent).ok_or("ECHILD")?;
                // waitpid(pid, WNOHANG) on a live child returns 0.
                if !self.tasks[i].zombie {
                    return Ok("none".into());
                }
                let reaper = self.tasks[p].name.clone();
                let (code, nr) = self.reap(i, p);
                Ok(format!("{name} code={code} pid={nr} reaped_by={reaper}"))
            }
            Cmd::WaitAny { parent, nohang } => {
                let p = self.find(parent).ok_or("ESRCH")?;
                if self.tasks[p].zombie {
                    return Err("ESRCH");
                }
                let children = self.children(p);
                if children.is_empty() {
                    return Err("ECHILD");
                }
                match children.into_iter().find(|&c| self.tasks[c].zombie) {
                    Some(c) => {
                        let name = self.tasks[c].name.clone();
                        let (code, nr) = self.reap(c, p);
                        Ok(format!("{name} code={code} pid={nr}"))
                    }
                    None if *nohang => Ok("none".into()),
                    // Linux would block; pidctl refuses.
                    None => Err("EDEADLK"),
                }
            }
            Cmd::PidMax { name, max } => {
                let i = self.find(name).ok_or("ESRCH")?;
                let max = i32::try_from(*max).unwrap_or(-1);
                if !(PID_MAX_MIN..=PID_MAX_LIMIT).contains(&max) {
                    return Err("EINVAL");
                }
                let ns = self.tasks[i].ns();
                self.ns[ns].pid_max = max;
                Ok(format!(
                    "pid_max={max} in `{name}`'s namespace (level {})",
                    self.ns[ns].level
                ))
            }
            Cmd::Ps => {
                let mut s = format!("{} tasks:", self.tasks.len());
                for t in &self.tasks {
                    let state = if t.zombie { "zombie" } else { "" };
                    s += &format!(" {}[{}]{state}", t.name, t.pids_text());
                }
                Ok(s)
            }
            Cmd::Check => Ok(if self.tasks.len() == 1 {
                "invariants: ok".into()
            } else {
                format!(
                    "{} tasks consistent (full check once only init is left)",
                    self.tasks.len()
                )
            }),
        }
    }

    /// The children of task `p` (indices), in its `children` list's order.
    fn children(&self, p: usize) -> Vec<usize> {
        let id = self.tasks[p].id;
        let mut c: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].parent == Some(id))
            .collect();
        c.sort_by_key(|&i| self.tasks[i].order);
        c
    }

    /// How many zombie children the task named `parent` has.
    pub fn zombie_children(&self, parent: &str) -> usize {
        self.find(parent).map_or(0, |p| {
            let children = self.children(p);
            children.iter().filter(|&&c| self.tasks[c].zombie).count()
        })
    }

    /// Whether task `t` has children (live or zombie).
    pub fn has_children(&self, t: &Task) -> bool {
        self.tasks.iter().any(|c| c.parent == Some(t.id))
    }

    /// `p` reaps its zombie child `i`: its exit code and its pid in `p`'s
    /// namespace; the pids are freed and the task is gone.
    fn reap(&mut self, i: usize, p: usize) -> (i32, u32) {
        let parent_ns = self.tasks[p].ns();
        let t = self.tasks.remove(i);
        let nr = t
            .pids
            .iter()
            .find(|(ns, _)| *ns == parent_ns)
            .map(|(_, nr)| *nr)
            .expect("a parent's namespace is one of its child's");
        self.free_pid(&t.pids);
        (t.code, nr)
    }

    /// pidctl's checks, then `copy_process` in the parent's namespace (or a
    /// new child of it).
    fn spawn(
        &mut self,
        name: &str,
        parent: &str,
        newns: bool,
        set_tid: &[i32],
        cap: bool,
    ) -> Result<String, &'static str> {
        if self.find(name).is_some() {
            return Err("EEXIST");
        }
        let p = self.find(parent).ok_or("ESRCH")?;
        if self.tasks[p].zombie {
            return Err("ESRCH");
        }
        let mut ns = self.tasks[p].ns();
        if newns {
            let parent_ns = &self.ns[ns];
            if parent_ns.level >= MAX_PID_NS_LEVEL {
                return Err("ENOSPC");
            }
            self.ns
                .push(Ns::new(parent_ns.level + 1, Some(ns), PID_MAX_LIMIT));
            ns = self.ns.len() - 1;
        }
        match self.alloc_pid(ns, set_tid, cap) {
            Ok(pids) => {
                let id = self.next_id;
                self.next_id += 1;
                if pids[0].1 == 1 {
                    self.ns[ns].reaper = Some(id);
                }
                // list_add_tail(&p->sibling, &parent->children)
                let order = self.next_order;
                self.next_order += 1;
                let task = Task {
                    id,
                    name: name.into(),
                    parent: Some(self.tasks[p].id),
                    zombie: false,
                    code: 0,
                    order,
                    pids,
                };
                let text = format!("{name} pids={}", task.pids_text());
                self.tasks.push(task);
                Ok(text)
            }
            Err(e) => {
                if newns {
                    self.ns.pop();
                }
                Err(e)
            }
        }
    }

    /// `alloc_pid`: per level, innermost first, that level's `set_tid`
    /// checks (stock; the alloc change makes them all first, see
    /// `checks_first`), then its number; on failure every number taken is
    /// given back (the cursors stay where cyclic allocation moved them).
    fn alloc_pid(
        &mut self,
        ns: usize,
        set_tid: &[i32],
        cap: bool,
    ) -> Result<Vec<(usize, u32)>, &'static str> {
        let mut chain = vec![ns];
        while let Some(p) = self.ns[*chain.last().unwrap()].parent {
            chain.push(p);
        }
        if set_tid.len() > chain.len() {
            return Err("EINVAL");
        }
        let pid_max: Vec<i32> = chain.iter().map(|&n| self.ns[n].pid_max).collect();
        let check = |m: &Ns, depth: usize| match set_tid.get(depth) {
            Some(&tid) if tid < 1 || tid >= m.pid_max || (tid != 1 && m.reaper.is_none()) => {
                Err("EINVAL")
            }
            Some(_) if !cap => Err("EPERM"),
            _ => Ok(()),
        };
        if self.checks_first {
            for (depth, &n) in chain.iter().enumerate() {
                check(&self.ns[n], depth)?;
            }
        }
        let mut taken: Vec<(usize, u32)> = Vec::new();
        let mut err = None;
        for (depth, &n) in chain.iter().enumerate() {
            if let Err(e) = check(&self.ns[n], depth) {
                err = Some(e);
                break;
            }
            let m = &mut self.ns[n];
            let nr = match set_tid.get(depth) {
                Some(&tid) if m.ids.contains(&(tid as u32)) => Err("EEXIST"),
                Some(&tid) => Ok(tid as u32),
                None => m.next_cyclic(pid_max[depth]).ok_or("EAGAIN"),
            };
            match nr {
                Ok(nr) => {
                    m.ids.insert(nr);
                    if depth >= set_tid.len() {
                        m.wraps += u32::from(nr < m.cursor);
                        m.cursor = nr + 1;
                    }
                    taken.push((n, nr));
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_none() && !self.ns[ns].accepts_pids() {
            err = Some("ENOMEM");
        }
        if let Some(e) = err {
            for (n, nr) in taken {
                self.ns[n].ids.remove(&nr);
            }
            if self.ns[ns].pid_allocated == PIDNS_ADDING {
                self.ns[ns].cursor = 0;
            }
            return Err(e);
        }
        for &(n, _) in &taken {
            self.ns[n].pid_allocated += 1;
        }
        Ok(taken)
    }

    /// `free_pid` at every level.
    fn free_pid(&mut self, pids: &[(usize, u32)]) {
        for &(n, nr) in pids {
            let m = &mut self.ns[n];
            m.pid_allocated = m.pid_allocated.wrapping_sub(1);
            if m.pid_allocated == PIDNS_ADDING {
                m.pid_allocated = 0;
            }
            m.ids.remove(&nr);
        }
    }

    /// `exit_notify`: a namespace's init stops allocation there; the
    /// children go to the nearest namespace init, from the task's own
    /// namespace outwards, that is not the task and still accepts pids, at
    /// the end of its list in their order (`list_splice_tail_init`).
    fn exit(&mut self, i: usize, code: i32) {
        let me = self.tasks[i].id;
        let own = self.tasks[i].ns();
        if self.ns[own].reaper == Some(me) {
            self.ns[own].pid_allocated &= !PIDNS_ADDING;
        }
        if self.tasks.iter().any(|t| t.parent == Some(me)) {
            let mut ns = own;
            let reaper = loop {
                let n = &self.ns[ns];
                match n.reaper {
                    Some(r) if r != me && n.accepts_pids() => break r,
                    _ => ns = n.parent.expect("the root's init never exits"),
                }
            };
            for c in self.children(i) {
                let t = &mut self.tasks[c];
                t.parent = Some(reaper);
                t.order = self.next_order;
                self.next_order += 1;
            }
        }
        let t = &mut self.tasks[i];
        t.zombie = true;
        t.code = code;
    }

    /// Tasks that may still run commands (alive, besides init).
    pub fn alive(&self) -> impl Iterator<Item = &Task> {
        self.tasks[1..].iter().filter(|t| !t.zombie)
    }
}

#[cfg(test)]
mod tests;
