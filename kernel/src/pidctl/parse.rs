//! pidctl's command language: one command per line.
//!
//! ```text
//! spawn NAME [parent=NAME] [newns] [set_tid=N,N,...] [nocap]
//! exit NAME [code=N]
//! wait NAME
//! wait-any PARENT [nohang]
//! pid_max NAME N
//! ps
//! check
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. Names are 1 to 16
//! characters from `[A-Za-z0-9_.-]`. Parsing only checks the form; whether a
//! value is acceptable (a tid in range, a pid_max within bounds) is decided
//! by the kernel code the command calls, so the errno is Linux's.

use core::fmt;

/// Longest `set_tid` list: one tid per namespace level (MAX_PID_NS_LEVEL + 1).
pub(crate) const MAX_SET_TID: usize = 33;
/// Longest task name.
pub(crate) const MAX_NAME: usize = 16;
/// Every command, for the help text.
pub(crate) const COMMANDS: &str = "spawn exit wait wait-any pid_max ps check";
/// `wait-any`'s form, for its errors.
const WAIT_ANY: &str = "wait-any PARENT [nohang]";

/// A `set_tid` list, innermost namespace level first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SetTid {
    tids: [i32; MAX_SET_TID],
    len: usize,
}

impl SetTid {
    pub(crate) const EMPTY: SetTid = SetTid {
        tids: [0; MAX_SET_TID],
        len: 0,
    };

    pub(crate) fn as_slice(&self) -> &[i32] {
        &self.tids[..self.len]
    }
}

/// A parsed `spawn` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpawnCmd<'a> {
    pub(crate) name: &'a str,
    pub(crate) parent: Option<&'a str>,
    pub(crate) newns: bool,
    pub(crate) set_tid: SetTid,
    pub(crate) nocap: bool,
}

/// One parsed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Spawn(SpawnCmd<'a>),
    Exit { name: &'a str, code: i32 },
    Wait { name: &'a str },
    WaitAny { parent: &'a str, nohang: bool },
    PidMax { name: &'a str, max: i64 },
    Ps,
    Check,
}

/// Why a line is not a command (answered `err EINVAL <this>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParseError<'a> {
    UnknownCommand(&'a str),
    Missing(&'static str),
    BadName(&'a str),
    BadArgument(&'a str),
    /// An argument where a command takes only its keyword(s): the
    /// argument and the command's form.
    BadOption(&'a str, &'static str),
    TooManyArguments(&'a str),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(c) => {
                write!(f, "unknown command `{c}` (commands: {COMMANDS})")
            }
            ParseError::Missing(what) => write!(f, "missing {what}"),
            ParseError::BadName(n) => write!(
                f,
                "bad task name `{n}` (1-{MAX_NAME} characters from A-Z a-z 0-9 _ . -)"
            ),
            ParseError::BadArgument(a) => write!(f, "bad argument `{a}`"),
            ParseError::BadOption(a, form) => write!(f, "bad argument `{a}` (usage: {form})"),
            ParseError::TooManyArguments(a) => write!(f, "unexpected argument `{a}`"),
        }
    }
}

fn name(word: Option<&str>) -> Result<&str, ParseError<'_>> {
    let n = word.ok_or(ParseError::Missing("task name"))?;
    let ok = !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(n)
    } else {
        Err(ParseError::BadName(n))
    }
}

fn no_more<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<(), ParseError<'a>> {
    match words.next() {
        Some(w) => Err(ParseError::TooManyArguments(w)),
        None => Ok(()),
    }
}

/// The rest of a `spawn` line after the task's `name`.
fn spawn<'a>(
    name: &'a str,
    words: impl Iterator<Item = &'a str>,
) -> Result<SpawnCmd<'a>, ParseError<'a>> {
    let mut s = SpawnCmd {
        name,
        parent: None,
        newns: false,
        set_tid: SetTid::EMPTY,
        nocap: false,
    };
    for w in words {
        if let Some(p) = w.strip_prefix("parent=") {
            s.parent = Some(self::name(Some(p))?);
        } else if let Some(list) = w.strip_prefix("set_tid=") {
            for t in list.split(',') {
                if s.set_tid.len == MAX_SET_TID {
                    return Err(ParseError::BadArgument(w));
                }
                s.set_tid.tids[s.set_tid.len] =
                    t.parse().map_err(|_| ParseError::BadArgument(w))?;
                s.set_tid.len += 1;
            }
        } else if w == "newns" {
            s.newns = true;
        } else if w == "nocap" {
            s.nocap = true;
        } else {
            return Err(ParseError::BadArgument(w));
        }
    }
    Ok(s)
}

/// Parses one line. `Ok(None)` for blank lines and comments.
pub(crate) fn parse(line: &str) -> Result<Option<Command<'_>>, ParseError<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().expect("non-empty line");
    let cmd = match verb {
        "spawn" => Command::Spawn(spawn(name(words.next())?, words)?),
        "exit" => {
            let name = name(words.next())?;
            let code = match words.next() {
                None => 0,
                Some(w) => w
                    .strip_prefix("code=")
                    .and_then(|c| c.parse().ok())
                    .ok_or(ParseError::BadArgument(w))?,
            };
            no_more(words)?;
            Command::Exit { name, code }
        }
        "wait" => {
            let name = name(words.next())?;
            no_more(words)?;
            Command::Wait { name }
        }
        "wait-any" => {
            let parent = name(words.next())?;
            let nohang = match words.next() {
                None => false,
                Some("nohang") => true,
                Some(w) => return Err(ParseError::BadOption(w, WAIT_ANY)),
            };
            no_more(words)?;
            Command::WaitAny { parent, nohang }
        }
        "pid_max" => {
            let name = name(words.next())?;
            let w = words.next().ok_or(ParseError::Missing("pid_max value"))?;
            let max = w.parse().map_err(|_| ParseError::BadArgument(w))?;
            no_more(words)?;
            Command::PidMax { name, max }
        }
        "ps" => {
            no_more(words)?;
            Command::Ps
        }
        "check" => {
            no_more(words)?;
            Command::Check
        }
        other => return Err(ParseError::UnknownCommand(other)),
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::klib::fuzz::arbitrary_text;

    #[test]
    fn spawn_with_everything() {
        let c = parse("spawn a parent=init newns set_tid=1,300,7 nocap").unwrap();
        let Some(Command::Spawn(s)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (s.name, s.parent, s.newns, s.nocap),
            ("a", Some("init"), true, true)
        );
        assert_eq!(s.set_tid.as_slice(), &[1, 300, 7]);
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            parse("exit a code=3").unwrap(),
            Some(Command::Exit { name: "a", code: 3 })
        );
        assert_eq!(
            parse("exit a").unwrap(),
            Some(Command::Exit { name: "a", code: 0 })
        );
        assert_eq!(
            parse("  wait b ").unwrap(),
            Some(Command::Wait { name: "b" })
        );
        assert_eq!(
            parse("wait-any p").unwrap(),
            Some(Command::WaitAny {
                parent: "p",
                nohang: false
            })
        );
        assert_eq!(
            parse("wait-any\tp   nohang").unwrap(),
            Some(Command::WaitAny {
                parent: "p",
                nohang: true
            })
        );
        assert_eq!(
            parse("pid_max a 301").unwrap(),
            Some(Command::PidMax {
                name: "a",
                max: 301
            })
        );
        assert_eq!(parse("ps").unwrap(), Some(Command::Ps));
        assert_eq!(parse("check").unwrap(), Some(Command::Check));
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# comment").unwrap(), None);
    }

    #[test]
    fn errors_name_the_problem() {
        for (line, needle) in [
            ("frob", "unknown command `frob`"),
            ("spawn", "missing task name"),
            ("spawn a/b", "bad task name"),
            ("spawn aaaaaaaaaaaaaaaaa", "bad task name"),
            ("spawn a set_tid=1,x", "bad argument"),
            ("spawn a set_tid=99999999999", "bad argument"),
            ("spawn a color=red", "bad argument"),
            ("exit a code=x", "bad argument"),
            ("wait a b", "unexpected argument `b`"),
            ("wait-any", "missing task name"),
            ("wait-any p/q", "bad task name `p/q`"),
            (
                "wait-any p block",
                "bad argument `block` (usage: wait-any PARENT [nohang])",
            ),
            ("wait-any p NOHANG", "bad argument `NOHANG`"),
            ("wait-any p nohang nohang", "unexpected argument `nohang`"),
            ("wait-any p nohang x", "unexpected argument `x`"),
            ("waitany p", "unknown command `waitany`"),
            ("pid_max a", "missing pid_max value"),
            ("ps now", "unexpected argument"),
        ] {
            let e = parse(line).unwrap_err().to_string();
            assert!(e.contains(needle), "{line}: {e}");
        }
        let many = format!("spawn a set_tid={}", ["1"; 34].join(","));
        assert!(parse(&many).is_err());
    }

    // ---- Property tests: no input makes the parser panic ----

    /// What a result says about the line: blank lines and comments are
    /// skipped, a command's names are valid, an error can be printed.
    fn check_line(line: &str) -> Result<(), TestCaseError> {
        let valid = |n: &str| name(Some(n)) == Ok(n);
        match parse(line) {
            Ok(None) => {
                let t = line.trim();
                prop_assert!(t.is_empty() || t.starts_with('#'), "{:?}", line);
            }
            Ok(Some(Command::Spawn(s))) => {
                prop_assert!(valid(s.name) && s.parent.is_none_or(valid));
                prop_assert!(s.set_tid.as_slice().len() <= MAX_SET_TID);
            }
            Ok(Some(
                Command::Exit { name, .. }
                | Command::Wait { name }
                | Command::WaitAny { parent: name, .. }
                | Command::PidMax { name, .. },
            )) => prop_assert!(valid(name)),
            Ok(Some(Command::Ps | Command::Check)) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    }

    /// A task name, mostly valid.
    fn task_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z0-9_.-]{1,16}",
            1 => "[A-Za-z0-9_.-]{17,20}",
            1 => "\\PC{0,4}",
        ]
    }

    /// A number in the range of one of the arguments, or past it.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i32>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(&["0", "-0", "+1", "2147483648", "-2147483649", "", "x"][..])
                .prop_map(String::from),
        ]
    }

    /// One argument of some command, or junk.
    fn argument() -> impl Strategy<Value = String> {
        prop_oneof![
            task_name(),
            spawn_option(),
            number().prop_map(|n| format!("code={n}")),
            number(),
            "[a-z_=,]{0,10}",
        ]
    }

    fn spawn_option() -> impl Strategy<Value = String> {
        prop_oneof![
            task_name().prop_map(|n| format!("parent={n}")),
            Just("newns".to_string()),
            Just("nocap".to_string()),
            proptest::collection::vec(number(), 0..40)
                .prop_map(|v| format!("set_tid={}", v.join(","))),
        ]
    }

    /// The words of one command in its documented shape, with numbers and
    /// names that may be out of range.
    fn command_words() -> impl Strategy<Value = Vec<String>> {
        let word = |w: &str| w.to_string();
        prop_oneof![
            3 => (task_name(), proptest::collection::vec(spawn_option(), 0..5))
                .prop_map(move |(n, opts)| [vec![word("spawn"), n], opts].concat()),
            1 => (task_name(), proptest::option::of(number()))
                .prop_map(move |(n, code)| {
                    let mut w = vec![word("exit"), n];
                    w.extend(code.map(|c| format!("code={c}")));
                    w
                }),
            1 => task_name().prop_map(move |n| vec![word("wait"), n]),
            1 => (task_name(), prop::sample::select(&["", "nohang", "hang", "NOHANG"][..]))
                .prop_map(move |(n, o)| {
                    let mut w = vec![word("wait-any"), n];
                    if !o.is_empty() {
                        w.push(word(o));
                    }
                    w
                }),
            1 => (task_name(), number()).prop_map(move |(n, v)| vec![word("pid_max"), n, v]),
            1 => prop::sample::select(&["ps", "check", "#", "quit"][..])
                .prop_map(move |w| vec![word(w)]),
            1 => "[a-z_]{0,8}".prop_map(|w| vec![w]),
        ]
    }

    /// A command, sometimes with a word too many or a word missing.
    fn near_valid_line() -> impl Strategy<Value = String> {
        (
            command_words(),
            prop_oneof![3 => Just(None), 1 => argument().prop_map(Some)],
            prop::bool::weighted(0.2),
            prop::sample::select(&[" ", "\t", "  "][..]),
        )
            .prop_map(|(mut words, extra, drop_last, sep)| {
                words.extend(extra);
                if drop_last && words.len() > 1 {
                    words.pop();
                }
                words.join(sep)
            })
    }

    #[test]
    fn near_valid_lines_reach_every_command_and_every_error() {
        use proptest::strategy::ValueTree;

        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let lines = near_valid_line();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let line = lines.new_tree(&mut runner).unwrap().current();
            seen.insert(match parse(&line) {
                Ok(None) => "skipped",
                Ok(Some(Command::Spawn(s))) if s.set_tid.len > 0 => "spawn set_tid",
                Ok(Some(Command::Spawn(_))) => "spawn",
                Ok(Some(Command::Exit { .. })) => "exit",
                Ok(Some(Command::Wait { .. })) => "wait",
                Ok(Some(Command::WaitAny { nohang: false, .. })) => "wait-any",
                Ok(Some(Command::WaitAny { nohang: true, .. })) => "wait-any nohang",
                Ok(Some(Command::PidMax { .. })) => "pid_max",
                Ok(Some(Command::Ps)) => "ps",
                Ok(Some(Command::Check)) => "check",
                Err(ParseError::UnknownCommand(_)) => "unknown command",
                Err(ParseError::Missing(_)) => "missing",
                Err(ParseError::BadName(_)) => "bad name",
                Err(ParseError::BadArgument(_)) => "bad argument",
                Err(ParseError::BadOption(..)) => "bad option",
                Err(ParseError::TooManyArguments(_)) => "too many arguments",
            });
        }
        assert_eq!(seen.len(), 16, "{seen:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any input, and commands in their documented shape.
        #[test]
        fn parse_never_panics(line in prop_oneof![arbitrary_text(), near_valid_line()]) {
            check_line(&line)?;
        }
    }
}
