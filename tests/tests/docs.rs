//! The documentation checks itself: README.md stays a door (at most 250
//! lines, linking every file in `docs/`), and every relative link in
//! README.md and `docs/*.md` reaches a file that exists and, with
//! `#anchor`, a heading of that file as GitHub names it.
//!
//! Host only: nothing here boots QEMU. The scanner is hand-written and
//! knows only what our docs use: ATX headings (`## Title`), inline links
//! (`[text](path#anchor)`), inline code spans and fenced code blocks.
//! Links with a scheme (`https:`, `mailto:`) are not followed; links and
//! headings inside fenced code blocks are not links or headings.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// README.md's length limit: past it, the README is a manual again.
const README_MAX_LINES: usize = 250;

/// What a link's path turned out to be.
enum Target {
    Missing,
    /// A file or directory we do not look into (anchors cannot be checked).
    Other,
    Markdown(String),
}

/// The repository root (this package lives in `tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Reads `path` (relative to the repository root) from the disk.
fn load_from_disk(path: &Path) -> Target {
    let full = repo_root().join(path);
    if full.is_file() && full.extension().is_some_and(|e| e == "md") {
        match fs::read_to_string(&full) {
            Ok(text) => Target::Markdown(text),
            Err(_) => Target::Missing,
        }
    } else if full.exists() {
        Target::Other
    } else {
        Target::Missing
    }
}

/// The `docs/*.md` files, relative to the repository root, sorted.
fn doc_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = fs::read_dir(repo_root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| Path::new("docs").join(path.file_name().expect("a file name")))
        .collect();
    docs.sort();
    docs
}

/// GitHub's anchor for a heading's text: lowercase; every character that is
/// not alphanumeric, a space, a hyphen or an underscore dropped; spaces
/// become hyphens. (Repeats get `-1`, `-2`, ... in [`anchors`].)
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Tracks fenced code blocks (```` ``` ```` or `~~~`, up to three spaces
/// in) line by line.
#[derive(Default)]
struct Fences {
    /// The open fence's character and length, while inside a block.
    open: Option<(char, usize)>,
}

impl Fences {
    /// Whether `line` is prose: not a fence line and not inside a block.
    fn is_prose(&mut self, line: &str) -> bool {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let fence = ['`', '~'].into_iter().find_map(|c| {
            let run = rest.len() - rest.trim_start_matches(c).len();
            (indent <= 3 && run >= 3).then_some((c, run))
        });
        match (self.open, fence) {
            (None, Some(fence)) => {
                self.open = Some(fence);
                false
            }
            (Some((c, len)), Some((close, run)))
                if close == c && run >= len && rest.trim_start_matches(c).trim().is_empty() =>
            {
                self.open = None;
                false
            }
            (Some(_), _) => false,
            (None, None) => true,
        }
    }
}

/// Every heading anchor of a markdown text, repeats numbered as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fences = Fences::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for line in text.lines() {
        if !fences.is_prose(line) {
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        let title = &line[hashes..];
        if !(1..=6).contains(&hashes) || !(title.is_empty() || title.starts_with(' ')) {
            continue;
        }
        let base = slug(title.trim_end().trim_end_matches('#'));
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `line` with the contents of its inline code spans removed (a link's
/// text may hold code; code never holds a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                // An unclosed run is literal text.
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The destinations of the inline links of a markdown text, with their
/// line numbers (from 1), outside fenced code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut fences = Fences::default();
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if !fences.is_prose(line) {
            continue;
        }
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            // A title (`[t](path "title")`) follows the path after a space.
            let dest = after[..close].split_whitespace().next().unwrap_or("");
            found.push((index + 1, dest.to_string()));
            rest = &after[close + 1..];
        }
    }
    found
}

/// Whether a link destination names a scheme (`https:`, `mailto:`, ...).
fn has_scheme(dest: &str) -> bool {
    match dest.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// `path` with `.` and `..` resolved without asking the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A relative link of `from`, resolved: the linked file (relative to the
/// repository root; `from` itself for `#anchor`) and the anchor, if any.
fn resolve(from: &Path, dest: &str) -> (PathBuf, Option<String>) {
    let (path, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor.to_string())),
        None => (dest, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        normalize(&from.parent().unwrap_or(Path::new("")).join(path))
    };
    (file, anchor)
}

/// Every broken relative link of the markdown file `from` (text `text`),
/// each as `from:line: what is wrong`. `load` reads a path relative to the
/// repository root.
fn broken_links(from: &Path, text: &str, load: &dyn Fn(&Path) -> Target) -> Vec<String> {
    let mut broken = Vec::new();
    for (line, dest) in links(text) {
        if has_scheme(&dest) {
            continue;
        }
        let at = format!("{}:{line}: link `{dest}`", from.display());
        let (file, anchor) = resolve(from, &dest);
        let target = if file == from {
            Target::Markdown(text.to_string())
        } else {
            load(&file)
        };
        match (target, anchor) {
            (Target::Missing, _) => broken.push(format!("{at}: no file {}", file.display())),
            (_, None) => {}
            (Target::Other, Some(_)) => broken.push(format!(
                "{at}: an anchor into {}, which is not a markdown file",
                file.display()
            )),
            (Target::Markdown(target), Some(anchor)) => {
                let known = anchors(&target);
                if !known.contains(&anchor) {
                    broken.push(format!(
                        "{at}: no heading `#{anchor}` in {} (its anchors: {})",
                        file.display(),
                        known.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    broken
}

#[test]
fn readme_is_at_most_250_lines() {
    let readme = fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail into docs/"
    );
}

#[test]
fn every_doc_is_linked_from_readme() {
    let readme_path = Path::new("README.md");
    let readme = fs::read_to_string(repo_root().join(readme_path)).expect("README.md");
    let linked: BTreeSet<PathBuf> = links(&readme)
        .into_iter()
        .filter(|(_, dest)| !has_scheme(dest))
        .map(|(_, dest)| resolve(readme_path, &dest).0)
        .collect();
    let docs = doc_files();
    assert!(!docs.is_empty(), "docs/ holds no .md file");
    let unlinked: Vec<String> = docs
        .iter()
        .filter(|doc| !linked.contains(*doc))
        .map(|doc| doc.display().to_string())
        .collect();
    assert!(
        unlinked.is_empty(),
        "not linked from README.md: {}",
        unlinked.join(", ")
    );
}

#[test]
fn every_relative_link_resolves() {
    let mut files = vec![PathBuf::from("README.md")];
    files.extend(doc_files());
    let mut broken = Vec::new();
    for file in &files {
        let text = fs::read_to_string(repo_root().join(file)).expect("a doc is readable");
        broken.extend(broken_links(file, &text, &load_from_disk));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn slug_follows_github() {
    assert_eq!(
        slug("`lockless`: a lock-free `alloc_pid`, the step upstream asks for next"),
        "lockless-a-lock-free-alloc_pid-the-step-upstream-asks-for-next"
    );
    assert_eq!(slug("Spinlocks: `lock=`"), "spinlocks-lock");
    assert_eq!(
        slug("`bench=soak`: the run to trust before the numbers"),
        "benchsoak-the-run-to-trust-before-the-numbers"
    );
    assert_eq!(
        slug("What Linux measured, and what to expect here"),
        "what-linux-measured-and-what-to-expect-here"
    );
    assert_eq!(slug("A  B"), "a--b");
}

#[test]
fn anchors_come_from_heading_lines() {
    let found: Vec<String> =
        anchors("### `lockless`: a lock-free `alloc_pid`, the step upstream asks for next\n")
            .into_iter()
            .collect();
    assert_eq!(
        found,
        ["lockless-a-lock-free-alloc_pid-the-step-upstream-asks-for-next"]
    );
}

#[test]
fn anchors_number_repeats_and_skip_code_blocks() {
    let text = "# Title\n## Title\n```\n# not a heading\n```\n### Title\n#no space\n";
    let found: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(found, ["title", "title-1", "title-2"]);
}

#[test]
fn links_skip_code_and_read_titles() {
    let text = "[a](x.md) `[b](y.md)` [`c`](z.md#h \"title\")\n\
                ```\n[d](w.md)\n```\n\
                ~~~~\n```\n[e](v.md)\n~~~~\n[f](#g)\n";
    let found: Vec<String> = links(text).into_iter().map(|(_, dest)| dest).collect();
    assert_eq!(found, ["x.md", "z.md#h", "#g"]);
}

#[test]
fn schemes_are_not_followed() {
    assert!(has_scheme("https://example.org/x.md"));
    assert!(has_scheme("mailto:someone@example.org"));
    assert!(!has_scheme("docs/locks.md#spinlocks-lock"));
    assert!(!has_scheme("#a"));
}

/// An in-memory tree for the checker: README.md and docs/a.md.
fn tree(readme: &'static str) -> impl Fn(&Path) -> Target {
    move |path: &Path| match path.to_str() {
        Some("README.md") => Target::Markdown(readme.to_string()),
        Some("docs/a.md") => Target::Markdown("# A doc\n## Part one\n".to_string()),
        Some("kernel") => Target::Other,
        _ => Target::Missing,
    }
}

#[test]
fn checker_accepts_good_links() {
    let load = tree("# Top\n");
    let doc = "# A doc\n## Part one\n[up](../README.md#top) [here](#part-one) \
               [dir](../kernel) [web](https://example.org/#x)\n";
    assert_eq!(
        broken_links(Path::new("docs/a.md"), doc, &load),
        Vec::<String>::new()
    );
}

#[test]
fn checker_fails_on_broken_links() {
    let load = tree("# Top\n");
    let readme = "[bad anchor](docs/a.md#part-two)\n\
                  [no file](docs/b.md)\n\
                  [own anchor](#nowhere)\n\
                  [into code](kernel#x)\n\
                  [fine](docs/a.md#part-one)\n";
    let broken = broken_links(Path::new("README.md"), readme, &load);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(broken[0].starts_with("README.md:1: link `docs/a.md#part-two`: no heading"));
    assert!(broken[1].contains("no file docs/b.md"));
    assert!(broken[2].contains("no heading `#nowhere` in README.md"));
    assert!(broken[3].contains("not a markdown file"));
}
