//! pidctl commands as the model takes them: built by the random script
//! generator, written out as script lines, and read back from
//! hand-written lines.

use std::fmt;

/// A `spawn` command: a new task `name`, child of `parent` (init when
/// `None`), in a new namespace if `newns`, with the pid numbers `set_tid`
/// asks for, without the capability `set_tid` needs if `nocap`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawn {
    pub name: String,
    pub parent: Option<String>,
    pub newns: bool,
    pub set_tid: Vec<i32>,
    pub nocap: bool,
}

impl Spawn {
    /// A plain `spawn name`: init's child, no options.
    pub fn new(name: impl Into<String>) -> Spawn {
        Spawn {
            name: name.into(),
            parent: None,
            newns: false,
            set_tid: Vec::new(),
            nocap: false,
        }
    }
}

impl fmt::Display for Spawn {
    /// The script line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spawn {}", self.name)?;
        if let Some(p) = &self.parent {
            write!(f, " parent={p}")?;
        }
        if self.newns {
            write!(f, " newns")?;
        }
        if !self.set_tid.is_empty() {
            let tids: Vec<String> = self.set_tid.iter().map(i32::to_string).collect();
            write!(f, " set_tid={}", tids.join(","))?;
        }
        if self.nocap {
            write!(f, " nocap")?;
        }
        Ok(())
    }
}

/// One pidctl command, in the form the kernel accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Spawn(Spawn),
    Exit { name: String, code: Option<i32> },
    Wait { name: String },
    WaitAny { parent: String, nohang: bool },
    PidMax { name: String, max: i64 },
    Ps,
    Check,
}

impl fmt::Display for Cmd {
    /// The script line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::Spawn(s) => s.fmt(f),
            Cmd::Exit { name, code: None } => write!(f, "exit {name}"),
            Cmd::Exit {
                name,
                code: Some(c),
            } => write!(f, "exit {name} code={c}"),
            Cmd::Wait { name } => write!(f, "wait {name}"),
            Cmd::WaitAny { parent, nohang } => {
                write!(
                    f,
                    "wait-any {parent}{}",
                    if *nohang { " nohang" } else { "" }
                )
            }
            Cmd::PidMax { name, max } => write!(f, "pid_max {name} {max}"),
            Cmd::Ps => write!(f, "ps"),
            Cmd::Check => write!(f, "check"),
        }
    }
}

impl Cmd {
    /// Reads a well-formed script line (for writing expectations by hand;
    /// malformed lines are the kernel parser's business and panic here).
    pub fn parse(line: &str) -> Cmd {
        let mut words = line.split_whitespace();
        let verb = words.next().expect("a command");
        let name = words.next().map(String::from);
        let rest: Vec<&str> = words.collect();
        let name = || name.clone().expect("a task name");
        match verb {
            "spawn" => {
                let mut s = Spawn::new(name());
                for w in rest {
                    if let Some(p) = w.strip_prefix("parent=") {
                        s.parent = Some(p.into());
                    } else if let Some(list) = w.strip_prefix("set_tid=") {
                        s.set_tid = list.split(',').map(|t| t.parse().unwrap()).collect();
                    } else {
                        match w {
                            "newns" => s.newns = true,
                            "nocap" => s.nocap = true,
                            _ => panic!("spawn argument {w}"),
                        }
                    }
                }
                Cmd::Spawn(s)
            }
            "exit" => Cmd::Exit {
                name: name(),
                code: rest
                    .first()
                    .map(|c| c.strip_prefix("code=").unwrap().parse().unwrap()),
            },
            "wait" => Cmd::Wait { name: name() },
            "wait-any" => Cmd::WaitAny {
                parent: name(),
                nohang: match rest[..] {
                    [] => false,
                    ["nohang"] => true,
                    _ => panic!("wait-any arguments {rest:?}"),
                },
            },
            "pid_max" => Cmd::PidMax {
                name: name(),
                max: rest[0].parse().unwrap(),
            },
            "ps" => Cmd::Ps,
            "check" => Cmd::Check,
            _ => panic!("command {verb}"),
        }
    }
}
