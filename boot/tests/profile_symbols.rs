//! Naming and classifying profile stacks with the real kernel ELF that
//! `build.rs` put in the disk image (host only, no QEMU): addresses are
//! taken from the ELF's own symbols, so the tests follow the kernel as it
//! changes. Synthetic serial output built from them stands in for the
//! kernel's profile rows.

use std::path::{Path, PathBuf};

use pidlab_boot::profile::categories::{CATEGORIES, Classifier, FrameMatch, locked_lines};
use pidlab_boot::profile::folded;
use pidlab_boot::profile::symbols::{Frame, Symbolizer};
use pidlab_boot::profile::{self, KERNEL_ELF, ProfileOptions, SymStack, flame, report};

/// Where the synthetic runs load the kernel (page aligned, as the
/// bootloader's high mapping).
const SLIDE: u64 = 0xffff_8000_0040_0000;

fn kernel() -> Symbolizer {
    Symbolizer::open(Path::new(KERNEL_ELF)).expect("the kernel ELF built with the runner")
}

/// The ELF address of a function, by plain path.
fn elf(sym: &Symbolizer, path: &str) -> u64 {
    sym.symbol_address(path)
        .unwrap_or_else(|| panic!("no symbol {path} in {KERNEL_ELF}"))
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| &*f.name).collect()
}

#[test]
fn the_kernel_elf_has_symbols_and_dwarf() {
    let sym = kernel();
    assert!(sym.has_dwarf(), "no DWARF: {:?}", sym.notes);
    assert!(sym.notes.is_empty(), "{:?}", sym.notes);
}

#[test]
fn kernel_main_symbolizes_with_and_without_a_slide() {
    let mut sym = kernel();
    let main = elf(&sym, "kernel_main");
    let want = "pidlab::boot::kernel_main";
    assert_eq!(&*sym.frames(main, true)[0].name, want);

    sym.set_runtime_kernel_main(main + SLIDE).unwrap();
    assert_eq!(sym.slide(), SLIDE);
    let leaf = sym.frames(main + SLIDE, true);
    assert_eq!(&*leaf[0].name, want, "{:?}", names(&leaf));
    assert_eq!(&*leaf[0].path, want);
    assert!(
        leaf[0]
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("kernel/src/boot.rs"))
    );
    // A return address is looked up one byte back: just past the start is
    // still kernel_main, whatever the byte before the start belongs to.
    let ret = sym.frames(main + SLIDE + 1, false);
    assert_eq!(&*ret[0].name, want);
    // Cached: the same frames, not a second lookup.
    assert!(std::rc::Rc::ptr_eq(&leaf, &sym.frames(main + SLIDE, true)));
    // Unslid, the address is nowhere in the kernel.
    let unknown = sym.frames(0x1234, true);
    assert_eq!(names(&unknown), ["[unknown 0x1234]"]);
}

#[test]
fn inlined_frames_expand_caller_first() {
    let mut sym = kernel();
    // Each version's `copy_process_inner::<V>` and `alloc_pid_as::<V>` is
    // a function of its own (`#[inline(never)]`, Linux's fork.c and pid.c);
    // the symbols' paths carry no generic arguments.
    for path in [
        "pidlab::task::fork::copy_process_inner",
        "pidlab::pid::alloc::alloc_pid_as",
    ] {
        let (start, size) = sym
            .symbol_range(path)
            .unwrap_or_else(|| panic!("no symbol {path}"));
        assert!(size > 0, "{path}");
        let chains: Vec<_> = (start..start + size).map(|a| sym.frames(a, true)).collect();
        for chain in &chains {
            // Every chain starts at the function that holds the code.
            assert_eq!(&*chain[0].path, path);
            for f in chain.iter() {
                // No crate disambiguator (`pidlab[1a2b..]::`), no LLVM suffix.
                assert!(
                    !f.name.contains("pidlab[") && !f.name.contains("core["),
                    "{}",
                    f.name
                );
                assert!(!f.name.contains(".llvm."), "{}", f.name);
            }
        }
        // Somewhere a callee and its own callee are inlined, caller
        // first, innermost last, each with its line.
        let deep = chains
            .iter()
            .find(|c| c.len() >= 3)
            .unwrap_or_else(|| panic!("an address of {path} two inlined calls deep"));
        assert!(
            deep.iter().all(|f| f.line.is_some() || f.file.is_none()),
            "{:?}",
            names(deep)
        );
    }
}

#[test]
fn the_stripped_boot_kernel_falls_back_to_the_symbol_table() {
    let boot = PathBuf::from(env!("PIDLAB_BOOT_KERNEL"));
    if boot == Path::new(KERNEL_ELF) {
        return; // build.rs could not strip (no llvm-objcopy): nothing to compare
    }
    let mut full = kernel();
    let mut bare = Symbolizer::open(&boot).unwrap();
    assert!(!bare.has_dwarf());
    assert!(
        bare.notes.iter().any(|n| n.contains("debug = \"limited\"")),
        "{:?}",
        bare.notes
    );
    let main = elf(&full, "kernel_main");
    assert_eq!(
        bare.symbol_address("kernel_main"),
        Some(main),
        "stripping moved nothing"
    );
    assert_eq!(
        names(&bare.frames(main, true)),
        ["pidlab::boot::kernel_main"]
    );
    // An inlined chain collapses to the function that holds the code.
    let (start, size) = full
        .symbol_range("pidlab::task::fork::copy_process")
        .unwrap();
    let a = (start..start + size)
        .find(|&a| full.frames(a, true).len() > 1)
        .unwrap();
    assert_eq!(
        names(&bare.frames(a, true)),
        ["pidlab::task::fork::copy_process"]
    );
}

/// Synthetic stacks from the kernel's function addresses, root first,
/// each frame the start of a function (a return address just past it).
struct Stacks {
    sym: Symbolizer,
}

impl Stacks {
    fn new() -> Stacks {
        let mut sym = kernel();
        let main = elf(&sym, "kernel_main");
        sym.set_runtime_kernel_main(main + SLIDE).unwrap();
        Stacks { sym }
    }

    /// Runtime addresses of `functions` (root first): return addresses one
    /// past each start, the leaf at its start.
    fn raw(&self, functions: &[&str]) -> Vec<u64> {
        let last = functions.len() - 1;
        functions
            .iter()
            .enumerate()
            .map(|(i, f)| elf(&self.sym, f) + SLIDE + u64::from(i != last))
            .collect()
    }

    fn frames(&mut self, raw: &[u64]) -> Vec<Frame> {
        let last = raw.len() - 1;
        raw.iter()
            .enumerate()
            .flat_map(|(i, &a)| self.sym.frames(a, i == last).to_vec())
            .collect()
    }

    fn category(&mut self, classifier: &mut Classifier, functions: &[&str]) -> &'static str {
        let raw = self.raw(functions);
        let frames = self.frames(&raw);
        classifier.row_names()[classifier.classify(&frames)]
    }
}

const SPIN_SLOW: &str = "pidlab::sync::raw::RawSpinLock::lock_slow";
const COPY_PROCESS: &str = "pidlab::task::fork::copy_process";
const ALLOC_PID: &str = "pidlab::pid::alloc::alloc_pid_counted";
const RELEASE_TASK: &str = "pidlab::task::exit::release_task";
const DO_EXIT: &str = "pidlab::task::exit::do_exit";
const SCHEDULE: &str = "pidlab::task::sched::schedule";

#[test]
fn categories_of_stacks_from_real_addresses() {
    let mut s = Stacks::new();
    let mut c = Classifier::new(CATEGORIES);
    for (stack, want) in [
        (
            &[COPY_PROCESS, ALLOC_PID, SPIN_SLOW][..],
            "alloc_pid: lock wait",
        ),
        (&[COPY_PROCESS, ALLOC_PID], "alloc_pid"),
        (
            &[
                COPY_PROCESS,
                "pidlab::sync::rwlock::RawRwLockIrq::write_lock_slow",
            ],
            "tasklist_lock wait",
        ),
        (&[DO_EXIT, RELEASE_TASK, SPIN_SLOW], "exit: lock wait"),
        (&[DO_EXIT, RELEASE_TASK], "exit_notify+release_task"),
        (&[DO_EXIT], "do_exit to the join"),
        // A wait under the scheduler is the scheduler's, even inside
        // release_task: the nearest categorised caller decides.
        (
            &[DO_EXIT, RELEASE_TASK, SCHEDULE, SPIN_SLOW],
            "sched, wake-ups, switch",
        ),
        (&["pidlab::task::sched::idle_loop"], "idle"),
        (
            &["pidlab::task::sched::idle_loop", SCHEDULE],
            "sched, wake-ups, switch",
        ),
        (&["pidlab::boot::kernel_main"], "other"),
        (&["pidlab::boot::kernel_main", SPIN_SLOW], "other"),
    ] {
        assert_eq!(s.category(&mut c, stack), want, "{stack:?}");
    }
}

/// The line-by-line classification of release_task: inside its
/// `tasklist_lock` block a sample is a hold, outside it the function's.
#[test]
fn release_task_splits_into_hold_and_the_rest_by_line() {
    let mut s = Stacks::new();
    let mut c = Classifier::new(CATEGORIES);
    let (start, size) = s.sym.symbol_range(RELEASE_TASK).unwrap();
    let (mut hold, mut rest) = (None, None);
    for a in start..start + size {
        let frames = s.frames(&[a + SLIDE]);
        match c.row_names()[c.classify(&frames)] {
            "tasklist_lock hold" => hold = hold.or(Some(frames)),
            "exit_notify+release_task" => rest = rest.or(Some(frames)),
            _ => {}
        }
    }
    let (hold, rest) = (
        hold.expect("a hold sample"),
        rest.expect("a release_task sample"),
    );
    let section = c
        .sections()
        .into_iter()
        .find(|s| s.function == RELEASE_TASK)
        .expect("release_task's section");
    let line_in = |frames: &[Frame]| {
        let f = frames.iter().find(|f| &*f.path == RELEASE_TASK).unwrap();
        f.line.unwrap()
    };
    let (from, to) = section.lines;
    assert!((from..=to).contains(&line_in(&hold)));
    assert!(!(from..=to).contains(&line_in(&rest)));
    // The section is the `let mut g = write_lock_irq_tasklist();` block of
    // the source the ELF was built from.
    let source = std::fs::read_to_string(&*section.file).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    assert!(lines[from as usize - 1].contains("let mut g = write_lock_irq_tasklist();"));
    assert_eq!(lines[to as usize - 1].trim(), "}");
}

/// Every `tasklist_lock` section the categories name is found in the
/// source of the kernel that was built: a renamed function or lock call
/// would silently empty the hold row.
#[test]
fn every_locked_section_is_in_the_kernel_source() {
    let mut sym = kernel();
    let mut found = 0;
    for m in CATEGORIES.iter().flat_map(|c| c.frames) {
        let FrameMatch::Locked { function, lock } = *m else {
            continue;
        };
        // (A holder inlined into its caller is found under the caller's
        // name.)
        let holder = [function, function.trim_end_matches("_inner")]
            .into_iter()
            .find_map(|f| sym.symbol_range(f))
            .unwrap_or_else(|| panic!("no code for {function}"));
        let name = function.rsplit("::").next().unwrap();
        // The first frame of the function whose file holds the section.
        let (source, (from, to)) = (holder.0..holder.0 + holder.1)
            .find_map(|a| {
                let frames = sym.frames(a, true);
                let file = frames.iter().find(|f| &*f.path == function)?.file.clone()?;
                let source = std::fs::read_to_string(&*file).ok()?;
                let lines = locked_lines(&source, name, lock)?;
                Some((source, lines))
            })
            .unwrap_or_else(|| panic!("no {lock} section of {function} in its source"));
        assert!(from < to, "{function}: {from}-{to}");
        assert!(
            source
                .lines()
                .nth(from as usize - 1)
                .unwrap()
                .contains(lock)
        );
        found += 1;
    }
    assert_eq!(found, 3, "copy_process_inner, exit_notify, release_task");
}

#[test]
fn locked_lines_follow_the_guard() {
    let src = r#"
fn release_task(p: TaskRef) {
    let x = '{';
    {
        let mut g = write_lock_irq_tasklist(); // {
        if bad {
            drop(g);
            return;
        }
        let s = "}";
    }
    after();
}

fn copy_process_inner() {
    let mut g = write_lock_irq_tasklist();
    if dying {
        drop(g);
        return;
    }
    work();
    drop(g);
    wake();
}

fn no_lock() {
    work();
}
fn later() { write_lock_irq_tasklist(); }
"#;
    let lock = "write_lock_irq_tasklist(";
    assert_eq!(locked_lines(src, "release_task", lock), Some((5, 11)));
    assert_eq!(
        locked_lines(src, "copy_process_inner", lock),
        Some((16, 22))
    );
    assert_eq!(
        locked_lines(src, "no_lock", lock),
        None,
        "not the next function's lock"
    );
    assert_eq!(locked_lines(src, "missing", lock), None);
}

/// A synthetic profile over real addresses, with totals that add up.
fn synthetic_log(s: &Stacks) -> String {
    let hex = |raw: Vec<u64>| {
        raw.iter()
            .map(|a| format!("{a:#x}"))
            .collect::<Vec<_>>()
            .join(";")
    };
    let alloc_wait = hex(s.raw(&[COPY_PROCESS, ALLOC_PID, SPIN_SLOW]));
    let alloc = hex(s.raw(&[COPY_PROCESS, ALLOC_PID]));
    let exit = hex(s.raw(&[DO_EXIT, RELEASE_TASK]));
    let idle = hex(s.raw(&["pidlab::task::sched::idle_loop"]));
    let main = elf(&s.sym, "kernel_main") + SLIDE;
    format!(
        "profile: on, 4000 Hz per CPU, NMI from HPET timer 2 (broadcast), kernel_main at {main:#x}\n\
         profile,version,workers,stack,count\n\
         profile,stock,1,{alloc_wait},60\n\
         profile,stock,1,{alloc},30\n\
         profile,stock,1,{exit},10\n\
         profile,stock,2,{alloc_wait},150\n\
         profile,stock,2,[truncated];{idle},40\n\
         profile,stock,2,[dropped],10\n\
         profile,both,1,{alloc},20\n\
         profile,both,1,{exit},20\n\
         profile,both,2,{idle},25\n\
         profile,-,0,{main:#x},5\n\
         profile,garbage\n\
         profile_total,version,workers,samples,ops,cpu_cycles\n\
         profile_total,stock,1,100,1000,65000000\n\
         profile_total,stock,2,200,4000,130000000\n\
         profile_total,both,1,40,2000,26000000\n\
         profile_total,both,2,25,500,16250000\n\
         profile: 370 samples taken, 370 in rows, 10 dropped (stack table full), 40 truncated unwinds\n\
         threadspawn_lock,stock,1,pidmap_lock,3.00,5000,400,100\n"
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pidlab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn folded_counts_per_version_add_up_to_the_totals() {
    let mut s = Stacks::new();
    let log = synthetic_log(&s);
    let text = folded::parse(&log);
    assert_eq!(text.errors.len(), 1, "the garbage row: {:?}", text.errors);
    assert!(
        report::check_totals(&text).is_empty(),
        "{:?}",
        report::check_totals(&text)
    );
    let stacks = profile::symbolize(&text, &mut s.sym);
    for v in text.versions() {
        let total: u64 = text
            .totals
            .iter()
            .filter(|t| t.version == v)
            .map(|t| t.samples)
            .sum();
        let mine = stacks.iter().filter(|st| st.version == v);
        assert_eq!(flame::folded_total(&flame::folded(mine)), total, "{v}");
        for w in text.worker_counts() {
            let one = stacks
                .iter()
                .filter(|st| st.version == v && st.workers == w);
            assert_eq!(
                flame::folded_total(&flame::folded(one)),
                text.total(&v, w).unwrap().samples
            );
        }
    }

    let dir = temp_dir("profile-dir");
    let cycles = |_: &str| Some(650000);
    let files = flame::write_all(&dir, &text.versions(), &stacks, cycles).unwrap();
    let mut written: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "both.folded",
            "both.svg",
            "both.w1.folded",
            "both.w1.svg",
            "both.w2.folded",
            "both.w2.svg",
            "diff-stock-both.svg",
            "outside.folded",
            "outside.svg",
            "stock.folded",
            "stock.svg",
            "stock.w1.folded",
            "stock.w1.svg",
            "stock.w2.folded",
            "stock.w2.svg",
        ]
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(flame::folded_total(&read("stock.folded")), 300);
    assert_eq!(flame::folded_total(&read("both.w2.folded")), 25);
    assert_eq!(flame::folded_total(&read("outside.folded")), 5);
    assert!(read("stock.folded").contains("[truncated];pidlab::task::sched::idle_loop 40\n"));
    assert!(read("stock.folded").contains("[dropped] 10\n"));
    assert!(
        !read("stock.folded").contains("kernel_main"),
        "outside samples stay outside"
    );
    let diff = read("diff-stock-both.svg");
    assert!(
        diff.contains("<svg") && diff.contains("stock -&gt; both"),
        "{}",
        &diff[..200]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_reports_top_functions_and_where_the_op_goes() {
    let s = Stacks::new();
    let log = synthetic_log(&s);
    let opts = ProfileOptions::default();
    let report = profile::analyze(&log, &opts).unwrap();
    assert!(report.files.is_empty(), "no --profile-dir, no files");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("serial line 13: profile row with 1 fields")),
        "{:?}",
        report.warnings
    );
    let t = &report.text;
    assert!(
        t.contains("profile top 15: stock, self samples by function"),
        "{t}"
    );
    // stock's 300 samples: 210 interrupted at lock_slow's start (70%),
    // named by the innermost function inlined there.
    let mut sym = kernel();
    let leaf = sym.frames(elf(&sym, SPIN_SLOW), true);
    let leaf = &*leaf.last().unwrap().name;
    let line = t
        .lines()
        .find(|l| l.ends_with(&format!("%  {leaf}")))
        .unwrap_or_else(|| panic!("no {leaf}: {t}"));
    assert!(line.trim_start().starts_with("210  70.0%"), "{line}");
    assert!(
        t.contains("profile: where the op goes, 1 worker: CPU cycles per op"),
        "{t}"
    );
    assert!(t.contains("profile: where the op goes, 2 workers"), "{t}");
    // 1 worker, stock: 60 of 100 samples x 65e6 cycles / 1000 ops = 39000.
    let row = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {t}"))
            .split_whitespace()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("alloc_pid: lock wait"), ["0", "39000"], "both, stock");
    assert_eq!(
        row("pidmap_lock wait"),
        ["-", "600"],
        "lockstat: 3 x 0.5 x 400"
    );
    assert_eq!(row("pidmap_lock hold"), ["-", "300"]);

    let none = profile::analyze("threadspawn: no profile here\n", &opts).unwrap_err();
    assert!(none.contains("profile=on"), "{none}");
    let bad_elf = ProfileOptions {
        kernel_elf: PathBuf::from("/nonexistent/kernel"),
        ..ProfileOptions::default()
    };
    let err = profile::analyze(&log, &bad_elf).unwrap_err();
    assert!(err.contains("/nonexistent/kernel"), "{err}");
}

#[test]
fn top_functions_count_the_leaf_after_inlining() {
    let stack = |names: &[&str], count| SymStack {
        version: "stock".into(),
        workers: 1,
        frames: names.iter().map(|n| Frame::named(n)).collect(),
        count,
    };
    let stacks = [
        stack(&["a", "b", "c"], 5),
        stack(&["a", "c"], 2),
        stack(&["a", "b"], 4),
        stack(&["d"], 4),
    ];
    let (top, total) = report::top_functions(&stacks, "stock");
    assert_eq!(total, 15);
    assert_eq!(
        top,
        [
            ("c".to_string(), 7),
            ("b".to_string(), 4),
            ("d".to_string(), 4)
        ]
    );
}
