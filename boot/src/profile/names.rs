//! Function names as a profile shows them, and the plain paths the
//! categories match on.
//!
//! Names come demangled without crate hashes, as `rustc-demangle`'s
//! alternate form prints them: `pidlab::pid::alloc::alloc_pid`,
//! `<pidlab::sync::raw::RawSpinLock<pidlab::sync::tas::Tas>>::lock_slow`,
//! `pidlab::pid::alloc::alloc_pid_counted::<pidlab::sync::irq::Irq>`. The
//! generic arguments tell instantiations apart (which lock algorithm ran),
//! so the flame graphs keep them; matching a category should not depend on
//! them, so [`plain_path`] drops them: `pidlab::sync::raw::RawSpinLock::lock_slow`.

/// Demangles a Rust symbol (legacy or v0) without its hash; any other name
/// comes back as it is. A `;` becomes `:` (as stackcollapse-perf does), so
/// a name such as `<[u8; 8]>::len` cannot split a folded stack.
pub fn demangle(raw: &str) -> String {
    let name = match rustc_demangle::try_demangle(raw) {
        Ok(d) => format!("{d:#}"),
        Err(_) => raw.to_string(),
    };
    name.replace(';', ":")
}

/// The path of a demangled name without generic arguments, with a
/// qualified self type (`<T as Trait>::f`, `<T>::f`) reduced to `T::f`.
pub fn plain_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if c != '<' {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (inner, after) = match matching_close(rest) {
            Some(close) => (&rest[1..close], &rest[close + 1..]),
            None => (&rest[1..], ""),
        };
        if out.is_empty() {
            // A qualified path (`<T as Trait>::f`, `<T>::f`) opens the
            // name: keep its self type.
            out.push_str(&plain_path(self_type(inner)));
        } else if out.ends_with("::") {
            // A turbofish: drop it with its `::`.
            out.truncate(out.len() - 2);
        }
        // Any other `<...>` is a type's generic arguments: dropped.
        rest = after;
    }
    out
}

/// The byte index of the `>` closing the `<` that `s` starts with; a `>`
/// after `-` (`fn() -> T`) closes nothing.
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut prev = '\0';
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if prev != '-' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

/// `T` of `T as Trait` (at bracket depth 0), or all of `inner`.
fn self_type(inner: &str) -> &str {
    let mut depth = 0usize;
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' | b')' | b']' => depth = depth.saturating_sub(1),
            b' ' if depth == 0 && inner[i..].starts_with(" as ") => return &inner[..i],
            _ => {}
        }
    }
    inner
}

/// Whether `path` (see [`plain_path`]) matches `pattern`: `a::b` matches
/// `a::b` and anything inside it (`a::b::{closure#0}`); `a::b*` matches
/// every path starting with `a::b` (`a::b_stock`, `a::bc::d`).
pub fn path_matches(path: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => {
            path == pattern
                || path
                    .strip_prefix(pattern)
                    .is_some_and(|rest| rest.starts_with("::"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_drop_generics_and_qualified_selves() {
        for (name, plain) in [
            (
                "pidlab::pid::alloc::alloc_pid",
                "pidlab::pid::alloc::alloc_pid",
            ),
            (
                "pidlab::pid::alloc::alloc_pid_counted::<pidlab::sync::irq::Irq>",
                "pidlab::pid::alloc::alloc_pid_counted",
            ),
            (
                "<pidlab::sync::raw::RawSpinLock<pidlab::sync::tas::Tas>>::lock_slow",
                "pidlab::sync::raw::RawSpinLock::lock_slow",
            ),
            (
                "<pidlab::sync::raw::RawSpinLock<pidlab::sync::choice::DynSpin> as lock_api::mutex::RawMutex>::lock",
                "pidlab::sync::raw::RawSpinLock::lock",
            ),
            (
                "<pidlab::sync::rwlock::RawRwLockIrq>::write_lock_slow::{closure#0}",
                "pidlab::sync::rwlock::RawRwLockIrq::write_lock_slow::{closure#0}",
            ),
            (
                "<core::option::Option<&pidlab::strategy::StrategyPair>>::unwrap_or",
                "core::option::Option::unwrap_or",
            ),
            (
                "pidlab::bench::locks::contended::<&dyn core::ops::function::Fn<(), Output = ()> + core::marker::Sync>",
                "pidlab::bench::locks::contended",
            ),
            ("f::<fn() -> u8>", "f"),
            ("[unknown 0x10]", "[unknown 0x10]"),
            ("pidlab_switch_context", "pidlab_switch_context"),
        ] {
            assert_eq!(plain_path(name), plain, "{name}");
        }
    }

    #[test]
    fn patterns_match_a_path_and_what_is_inside_it() {
        let p = "pidlab::task::exit::release_task";
        assert!(path_matches(p, p));
        assert!(path_matches(&format!("{p}::{{closure#0}}"), p));
        assert!(!path_matches("pidlab::task::exit::release_task_post", p));
        assert!(path_matches(
            "pidlab::pid::alloc::alloc_pid_stock",
            "pidlab::pid::alloc::alloc_pid*"
        ));
        assert!(!path_matches(
            "pidlab::pid::free_pid",
            "pidlab::pid::alloc::alloc_pid*"
        ));
    }

    #[test]
    fn demangling_drops_hashes_and_semicolons() {
        assert_eq!(
            demangle("_RNvNtNtCsbmN652gSSHr_6pidlab4task4exit12release_task"),
            "pidlab::task::exit::release_task"
        );
        assert_eq!(
            demangle(
                "_RNvNtNtCs4KtLL3evmPQ_6pidlab4task4exit11exit_notify.llvm.1789162914973185772"
            ),
            "pidlab::task::exit::exit_notify"
        );
        assert_eq!(demangle("_ZN3foo17h05af221e174051e9E"), "foo");
        assert_eq!(demangle("pidlab_switch_context"), "pidlab_switch_context");
        assert_eq!(demangle("<[u8; 8]>::len"), "<[u8: 8]>::len");
    }
}
