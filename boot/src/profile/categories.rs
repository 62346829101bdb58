//! Where an op's cycles go: each sample's stack put in one category.
//!
//! [`CATEGORIES`] is the list, in the order the report prints it. A sample
//! is classified leaf-up: walking from the interrupted function towards the
//! root, the first frame that matches a category's `frames` decides, so a
//! sample counts once and the most specific frame wins (a spinlock wait
//! inside `release_task` is a wait, not `release_task`). Among categories
//! matching the same frame, the earlier in the list wins. A category with
//! `under` also asks for context: the nearest frame towards the root that
//! matches any category must match one of `under` (a spinlock wait whose
//! nearest categorised caller is `alloc_pid` is `alloc_pid`'s wait; one
//! under `wake_up_process` is not, and the walk goes on up).
//!
//! Names are matched on plain demangled paths ([`plain_path`]), with
//! [`path_matches`]'s patterns. A `tasklist_lock` hold is not a function
//! but a stretch of one: [`FrameMatch::Locked`] takes the lines of a
//! function from its `write_lock_irq_tasklist()` call to where that guard
//! is dropped or goes out of scope, read from the source file DWARF names
//! for the frame, and matches a frame of that function on those lines.

use std::collections::HashMap;
use std::rc::Rc;

use super::names::path_matches;
#[cfg(doc)]
use super::names::plain_path;
use super::symbols::Frame;

/// What a frame must be.
#[derive(Clone, Copy, Debug)]
pub enum FrameMatch {
    /// A function (a [`path_matches`] pattern).
    Function(&'static str),
    /// The lines of `function` (a path, no pattern) from the line calling
    /// `lock` to the guard's `drop` or the end of its block.
    Locked {
        function: &'static str,
        lock: &'static str,
    },
}

/// One row of the "where the op goes" table.
#[derive(Clone, Copy, Debug)]
pub struct Category {
    pub name: &'static str,
    pub frames: &'static [FrameMatch],
    /// Empty: anywhere. Otherwise the nearest categorised frame towards
    /// the root must match one of these patterns.
    pub under: &'static [&'static str],
}

use FrameMatch::{Function as F, Locked};

/// A spinlock's contended path (the protocol's spinning is inlined into
/// it), and the heap's own lock.
const SPIN_WAIT: &[FrameMatch] = &[
    F("pidlab::sync::raw::RawSpinLock::lock_slow"),
    F("pidlab::mm::heap::KernelHeap::lock_slow"),
];
const TASKLIST_LOCK: &str = "write_lock_irq_tasklist(";
const ALLOC_PID: &str = "pidlab::pid::alloc::alloc_pid*";
const EXIT_NOTIFY: &str = "pidlab::task::exit::exit_notify";
const RELEASE_TASK: &str = "pidlab::task::exit::release_task";

/// The categories, in report order. Samples matching none are "other".
pub const CATEGORIES: &[Category] = &[
    Category {
        name: "alloc_pid: lock wait",
        frames: SPIN_WAIT,
        under: &[ALLOC_PID],
    },
    Category {
        name: "alloc_pid",
        frames: &[F(ALLOC_PID)],
        under: &[],
    },
    Category {
        name: "tasklist_lock wait",
        frames: &[
            F("pidlab::sync::rwlock::RawRwLockIrq::write_lock_slow"),
            F("pidlab::sync::rwlock::RawRwLockIrq::read_lock_slow"),
        ],
        under: &[],
    },
    Category {
        name: "tasklist_lock hold",
        frames: &[
            Locked {
                function: "pidlab::task::fork::copy_process_inner",
                lock: TASKLIST_LOCK,
            },
            Locked {
                function: EXIT_NOTIFY,
                lock: TASKLIST_LOCK,
            },
            Locked {
                function: RELEASE_TASK,
                lock: TASKLIST_LOCK,
            },
        ],
        under: &[],
    },
    Category {
        name: "copy_process (rest)",
        frames: &[F("pidlab::task::fork::copy_process*")],
        under: &[],
    },
    Category {
        name: "do_exit to the join",
        frames: &[
            F("pidlab::task::exit::do_exit"),
            F("pidlab::task::exit::mm_release"),
            F("pidlab::task::sched::exit_current"),
        ],
        under: &[],
    },
    Category {
        name: "exit: lock wait",
        frames: SPIN_WAIT,
        under: &[EXIT_NOTIFY, RELEASE_TASK],
    },
    Category {
        name: "exit_notify+release_task",
        frames: &[F(EXIT_NOTIFY), F(RELEASE_TASK)],
        under: &[],
    },
    Category {
        name: "sched, wake-ups, switch",
        frames: &[
            F("pidlab::task::sched::schedule"),
            F("pidlab::task::sched::wake_*"),
            F("pidlab::task::sched::enqueue"),
            F("pidlab::task::sched::block_until"),
            F("pidlab::task::sched::join"),
            F("pidlab::task::sched::finish_task_switch"),
            F("pidlab::task::sched::yield_now"),
            F("pidlab::task::sched::cond_resched"),
            F("pidlab::task::sched::exit_final"),
            F("pidlab::task::kick"),
            F("pidlab::arch::switch"),
            F("pidlab_switch_context"),
            F("pidlab_task_start"),
        ],
        under: &[],
    },
    Category {
        name: "rcu callbacks",
        frames: &[
            F("pidlab::rcu::rcu_idle"),
            F("pidlab::rcu::rcu_sched_clock_irq"),
        ],
        under: &[],
    },
    Category {
        name: IDLE,
        frames: &[
            F("pidlab::task::sched::idle_loop"),
            F("pidlab::task::sched::idle_entry"),
            F("pidlab::task::sched::run_ap_idle"),
        ],
        under: &[],
    },
];

/// The row of samples no category claims.
pub const OTHER: &str = "other";

/// The idle CPUs' row, which the report also leaves out of a total.
pub const IDLE: &str = "idle";

/// A [`FrameMatch::Locked`] stretch found in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub function: &'static str,
    pub file: Rc<str>,
    /// 1-based, inclusive.
    pub lines: (u32, u32),
}

/// A [`FrameMatch::Locked`] function in one source file.
type SectionKey = (&'static str, Rc<str>);

/// Puts stacks in categories; reads and caches the source the locked
/// sections come from.
pub struct Classifier {
    categories: &'static [Category],
    sources: HashMap<Rc<str>, Option<Rc<str>>>,
    sections: HashMap<SectionKey, Option<(u32, u32)>>,
    /// Source files that could not be read.
    pub notes: Vec<String>,
}

impl Classifier {
    pub fn new(categories: &'static [Category]) -> Classifier {
        Classifier {
            categories,
            sources: HashMap::new(),
            sections: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The names of the rows: the categories, then [`OTHER`].
    pub fn row_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.categories.iter().map(|c| c.name).collect();
        names.push(OTHER);
        names
    }

    /// The category of a stack (root first), as an index into
    /// [`Self::row_names`].
    pub fn classify(&mut self, frames: &[Frame]) -> usize {
        for i in (0..frames.len()).rev() {
            for (ci, c) in self.categories.iter().enumerate() {
                if !c.frames.iter().any(|m| self.frame_matches(m, &frames[i])) {
                    continue;
                }
                if !c.under.is_empty() {
                    let owner = (0..i).rev().find(|&j| self.categorised(&frames[j]));
                    let under = owner
                        .is_some_and(|j| c.under.iter().any(|p| path_matches(&frames[j].path, p)));
                    if !under {
                        continue;
                    }
                }
                return ci;
            }
        }
        self.categories.len()
    }

    /// The locked sections found so far, sorted.
    pub fn sections(&self) -> Vec<Section> {
        let mut v: Vec<Section> = self
            .sections
            .iter()
            .filter_map(|((function, file), lines)| {
                Some(Section {
                    function,
                    file: file.clone(),
                    lines: (*lines)?,
                })
            })
            .collect();
        v.sort_by(|a, b| (a.function, a.lines).cmp(&(b.function, b.lines)));
        v.dedup();
        v
    }

    /// Whether any category names this frame's function.
    fn categorised(&self, f: &Frame) -> bool {
        self.categories.iter().any(|c| {
            c.frames.iter().any(|m| match *m {
                F(p) => path_matches(&f.path, p),
                Locked { function, .. } => path_matches(&f.path, function),
            })
        })
    }

    fn frame_matches(&mut self, m: &FrameMatch, f: &Frame) -> bool {
        match *m {
            F(p) => path_matches(&f.path, p),
            Locked { function, lock } => {
                if *f.path != *function {
                    return false;
                }
                let (Some(file), Some(line)) = (&f.file, f.line) else {
                    return false;
                };
                self.section(function, lock, file)
                    .is_some_and(|(from, to)| (from..=to).contains(&line))
            }
        }
    }

    fn section(
        &mut self,
        function: &'static str,
        lock: &str,
        file: &Rc<str>,
    ) -> Option<(u32, u32)> {
        let key = (function, file.clone());
        if let Some(s) = self.sections.get(&key) {
            return *s;
        }
        let source = self.source(file);
        let name = function.rsplit("::").next().unwrap_or(function);
        let lines = source.and_then(|s| locked_lines(&s, name, lock));
        self.sections.insert(key, lines);
        lines
    }

    fn source(&mut self, file: &Rc<str>) -> Option<Rc<str>> {
        if let Some(s) = self.sources.get(file) {
            return s.clone();
        }
        let text = match std::fs::read_to_string(&**file) {
            Ok(t) => Some(Rc::from(t)),
            Err(e) => {
                self.notes.push(format!(
                    "cannot read {file} ({e}): its tasklist_lock hold section is not recognised"
                ));
                None
            }
        };
        self.sources.insert(file.clone(), text.clone());
        text
    }
}

/// The 1-based lines of `function` in `source` from the first line that
/// calls `lock` to the line that drops the guard it binds (`drop(g)` at the
/// same block depth) or closes its block, inclusive.
pub fn locked_lines(source: &str, function: &str, lock: &str) -> Option<(u32, u32)> {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines.iter().position(|l| declares(l, function))?;
    let mut depth = 0i32;
    let mut opened = false;
    let mut lock_at = None;
    for (i, l) in lines.iter().enumerate().skip(start) {
        if i > start && code(l).contains(lock) {
            lock_at = Some(i);
            break;
        }
        for c in code(l).chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return None; // the function ended without taking the lock
        }
    }
    let lock_at = lock_at?;
    let guard = binding(lines[lock_at]);
    let mut depth = 0i32;
    for (i, l) in lines.iter().enumerate().skip(lock_at + 1) {
        let code = code(l);
        if depth == 0
            && let Some(g) = &guard
            && code.contains(&format!("drop({g})"))
        {
            return Some((lock_at as u32 + 1, i as u32 + 1));
        }
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth < 0 {
                        return Some((lock_at as u32 + 1, i as u32 + 1));
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// Whether `line` declares `fn function` (`fn name(` or `fn name<`).
fn declares(line: &str, function: &str) -> bool {
    let code = code(line);
    let pattern = format!("fn {function}");
    code.match_indices(&pattern).any(|(at, _)| {
        let before_ok = at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let after = code[at + pattern.len()..].chars().next();
        before_ok && matches!(after, Some('(' | '<'))
    })
}

/// The name `let [mut] NAME = ...` binds on `line`.
fn binding(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("let ")?;
    let rest = rest.strip_prefix("mut ").unwrap_or(rest);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A line without its `//` comment and with string and char literals
/// blanked, so their braces do not count.
fn code(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push('"');
            }
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal ('{', '\n'); a lifetime has no closing quote.
                let rest: String = chars.clone().take(3).collect();
                let skip = if rest.starts_with('\\') {
                    rest.get(2..).and_then(|r| r.find('\'')).map(|i| i + 3)
                } else if rest.chars().nth(1) == Some('\'') {
                    Some(2)
                } else {
                    None
                };
                match skip {
                    Some(n) => {
                        for _ in 0..n {
                            chars.next();
                        }
                        out.push_str("' '");
                    }
                    None => out.push('\''),
                }
            }
            _ => out.push(c),
        }
    }
    out
}
