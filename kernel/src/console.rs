//! The console: `print!`/`println!` and the `log` backend.
//!
//! On the bare-metal build the text goes to COM1 under the console lock (see
//! `arch::serial`), one `print!` call at a time, so lines from different CPUs
//! never interleave mid-line and an interrupt or exception handler can print
//! even while the code it interrupted held the lock. On the host the text goes to
//! stdout (captured by the test harness in unit tests).

use core::fmt;

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

#[doc(hidden)]
pub(crate) fn _print(args: fmt::Arguments<'_>) {
    #[cfg(target_os = "none")]
    crate::arch::serial::write_fmt(args);
    #[cfg(not(target_os = "none"))]
    std::print!("{args}");
}

/// The `log` backend: `[LEVEL cpuN] message` on the console.
struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!(
                "[{:<5} cpu{}] {}",
                record.level(),
                current_cpu(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

fn current_cpu() -> u32 {
    #[cfg(target_os = "none")]
    return crate::arch::percpu::cpu_index();
    #[cfg(not(target_os = "none"))]
    0
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Routes the `log` macros to the console at `level`. Safe to call again to
/// change the level.
pub(crate) fn init_log(level: log::LevelFilter) {
    // Only the first call installs the logger; later ones just set the level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
