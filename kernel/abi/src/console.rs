//! The serial lines that carry a failure's reason: the runner quotes them
//! when the kernel reports failure, so whatever the kernel prints when it
//! fails must start with one of these.

/// Starts every line of a kernel panic report.
pub const PANIC_MARK: &str = "!!!";

/// Starts the line the kernel prints before failing on an error the user
/// caused (a bad parameter, a missing script).
pub const ERROR_PREFIX: &str = "error:";

/// Whether `line` tells why the kernel failed.
pub fn is_failure_line(line: &str) -> bool {
    line.starts_with(PANIC_MARK) || line.starts_with(ERROR_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines() {
        assert!(is_failure_line("!!! KERNEL PANIC on cpu 0: boom"));
        assert!(is_failure_line("error: cmdline: unknown key `x`"));
        assert!(!is_failure_line("pidlab 0.1.0"));
        assert!(!is_failure_line(" error: indented"));
    }
}
