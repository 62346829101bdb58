//! The kernel's rooms in layers: dependencies point down.
//!
//! A room is a top-level module of `kernel/src` (a directory or a file;
//! `lib.rs` is the crate root, not a room). Its dependencies are the rooms
//! its code names as `crate::room` (in `use` lines and in paths), test code
//! left out (`tests.rs`, `*_tests.rs`, `loom_*.rs`, files under a `tests/`
//! directory, and `#[cfg(test)]` modules). Macros are entry points, not
//! imports: `println!` reaches the console as `printk` does in Linux.
//!
//! Each room has a layer in [`LAYERS`], and may name only rooms of lower
//! layers: `arch` at the bottom imports nothing (what it reports about
//! tasks, locks and memory reaches it through hooks the layers above
//! register at boot, see `arch/hooks.rs`), `sync` only the arch seam, and
//! `mm`, `rcu`, `klib` never `pid` or `task`. A room missing from the table
//! fails the test until it gets a layer. No source file (test files
//! aside) is over 600 lines. Run alone with `make layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Rooms bottom up; a room may use rooms of lower layers only.
const LAYERS: &[(&str, u32)] = &[
    ("arch", 0),
    ("platform", 1),
    ("console", 1),
    ("sync", 2),
    ("strategy", 2),
    ("mm", 3),
    ("rcu", 3),
    ("klib", 4),
    ("perf", 4),
    ("random", 5),
    ("pid", 6),
    ("task", 7),
    ("selftest", 8),
    ("bench", 9),
    ("pidctl", 9),
    ("cmdline", 10),
    ("boot", 11),
];

/// One `crate::room` reference: where it is.
#[derive(Clone, Debug)]
struct Site {
    file: PathBuf,
    line: usize,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || name.starts_with("loom_")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The rooms of `src`: its subdirectories and files, but the crate root.
fn rooms(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(stem)
        })
        .filter(|r| r != "lib")
        .collect()
}

/// The file's code lines (1-based numbers), with `//` comments and
/// `#[cfg(test)]`/`#[cfg(all(test, ...))]` modules removed.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let code = line.split("//").next().unwrap_or("").to_string();
        let attr = code.trim();
        if attr.starts_with("#[cfg(") && attr.contains("test") && !attr.contains("not(test") {
            // A test-only module: skip it to its closing brace.
            if let Some((_, next)) = lines.peek()
                && next.trim_start().starts_with("mod ")
                && next.contains('{')
            {
                let mut depth = 0i32;
                for (_, l) in lines.by_ref() {
                    let l = l.split("//").next().unwrap_or("");
                    depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                    if depth <= 0 {
                        break;
                    }
                }
                continue;
            }
        }
        out.push((i + 1, code));
    }
    out
}

/// The first path segments named after `crate::` on a line, including
/// those of a `crate::{a, b::c}` group.
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` (a macro's own path) or `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let seg: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !seg.is_empty() {
                    out.push(seg);
                }
            }
        } else {
            let seg: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !seg.is_empty() {
                out.push(seg);
            }
        }
    }
    out
}

/// room -> the rooms it names, with where.
fn dependency_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, Vec<Site>>> {
    let rooms = rooms(src);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<Site>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src").to_path_buf();
        if is_test_file(&rel) {
            continue;
        }
        let first = rel.components().next().expect("a component");
        let room = Path::new(first.as_os_str())
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        if room == "lib" {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read a source file");
        for (line, code) in code_lines(&text) {
            for target in crate_refs(&code) {
                if target != room && rooms.contains(&target) {
                    graph
                        .entry(room.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .push(Site {
                            file: rel.clone(),
                            line,
                            text: code.trim().to_string(),
                        });
                }
            }
        }
    }
    graph
}

/// Rooms that import one another in a circle (strongly connected
/// components of more than one room), by Tarjan's algorithm.
fn circles(graph: &BTreeMap<String, BTreeMap<String, Vec<Site>>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, Vec<Site>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges.keys() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn describe(site: &Site) -> String {
    format!("{}:{}: {}", site.file.display(), site.line, site.text)
}

/// What is wrong with `graph`: circles, rooms without a layer, imports
/// that point up or sideways. Empty when the layers hold.
fn violations(
    graph: &BTreeMap<String, BTreeMap<String, Vec<Site>>>,
    rooms: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for circle in circles(graph) {
        let mut msg = format!("rooms in a circle: {}", circle.join(", "));
        for from in &circle {
            for (to, sites) in &graph[from] {
                if circle.contains(to) {
                    msg += &format!("\n    {from} -> {to}: {}", describe(&sites[0]));
                }
            }
        }
        out.push(msg);
    }
    let layer = |r: &str| LAYERS.iter().find(|(n, _)| *n == r).map(|&(_, l)| l);
    for room in rooms {
        if layer(room).is_none() {
            out.push(format!(
                "room `{room}` has no layer: give it one in LAYERS (kernel/tests/layers.rs)"
            ));
        }
    }
    for (from, edges) in graph {
        let Some(lf) = layer(from) else { continue };
        for (to, sites) in edges {
            let Some(lt) = layer(to) else { continue };
            if lt >= lf {
                out.push(format!(
                    "{from} (layer {lf}) uses {to} (layer {lt}): dependencies point down; {}",
                    describe(&sites[0])
                ));
            }
        }
    }
    out
}

#[test]
fn rooms_depend_only_on_lower_layers() {
    let src = src_dir();
    let graph = dependency_graph(&src);
    let problems = violations(&graph, &rooms(&src));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    for (name, _) in LAYERS {
        assert!(
            rooms(&src).contains(*name),
            "LAYERS names `{name}`, which is not a room of kernel/src"
        );
    }
}

/// Most lines a source file may have: one concept per file, and a file
/// past this wants splitting. Test files may be longer.
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_is_over_600_lines() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f.strip_prefix(&src).expect("under src")))
        .filter_map(|f| {
            let n = fs::read_to_string(f).expect("read").lines().count();
            (n > MAX_LINES).then(|| format!("{} has {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split by concept (at most {MAX_LINES} lines):\n{}",
        long.join("\n")
    );
}

#[test]
fn an_upward_import_closes_a_circle_and_is_reported() {
    // The graph as it is, plus arch/idt.rs naming the task room again.
    let src = src_dir();
    let mut graph = dependency_graph(&src);
    graph
        .entry("arch".into())
        .or_default()
        .entry("task".into())
        .or_default()
        .push(Site {
            file: "arch/idt.rs".into(),
            line: 1,
            text: "use crate::task::sched;".into(),
        });
    let problems = violations(&graph, &rooms(&src));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("rooms in a circle:") && p.contains("arch -> task")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("arch (layer 0) uses task")),
        "{problems:?}"
    );
}

#[test]
fn crate_paths_are_read_from_use_lines_groups_and_paths() {
    assert_eq!(crate_refs("use crate::task::sched;"), ["task"]);
    assert_eq!(crate_refs("use crate::{arch, mm::stack};"), ["arch", "mm"]);
    assert_eq!(
        crate_refs("let x = crate::sync::debug::waiting_for(cpu);"),
        ["sync"]
    );
    assert!(crate_refs("$crate::console::_print(args)").is_empty());
    let text = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\nuse crate::c; // crate::d\n";
    let refs: Vec<String> = code_lines(text)
        .iter()
        .flat_map(|(_, l)| crate_refs(l))
        .collect();
    assert_eq!(refs, ["a", "c"]);
}
