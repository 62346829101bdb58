//! Naming the kernel's code addresses from its ELF: DWARF (through
//! `addr2line`) for functions with their inlined callers expanded, as
//! `perf report --inline` does, and the symbol table where DWARF has
//! nothing (assembly such as `pidlab_switch_context`, or a kernel built
//! without debug info).
//!
//! The kernel is position independent and the bootloader loads it high, so
//! a runtime address is the ELF address plus a slide; the kernel prints
//! where `kernel_main` runs and [`Symbolizer::set_runtime_kernel_main`]
//! takes the slide from it. A return address is looked up one byte back
//! (inside the call instruction, whose inlining chain is the caller's); the
//! interrupted leaf at its own address. Lookups are cached: a profile
//! repeats the same few hundred addresses thousands of times.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use super::names::{demangle, plain_path};

type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// One function frame, after inline expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Demangled, without the crate hash (see [`demangle`]).
    pub name: Rc<str>,
    /// [`plain_path`] of the name: what categories match.
    pub path: Rc<str>,
    /// Where in this function the sample is (for a caller: the call), if
    /// DWARF says.
    pub file: Option<Rc<str>>,
    pub line: Option<u32>,
}

impl Frame {
    /// A frame with a name only (a marker, a symbol, an unknown address).
    pub fn named(name: &str) -> Frame {
        Frame {
            name: name.into(),
            path: plain_path(name).into(),
            file: None,
            line: None,
        }
    }
}

struct Symbol {
    addr: u64,
    size: u64,
    name: String,
}

/// The kernel ELF's names for addresses, with a cache.
pub struct Symbolizer {
    dwarf: Option<addr2line::Context<Reader>>,
    /// Function symbols, sorted by address.
    symbols: Vec<Symbol>,
    /// The code sections' address ranges: nothing else is looked up (the
    /// DWARF of code the linker dropped sits at address 0).
    text: Vec<(u64, u64)>,
    /// Runtime address minus ELF address.
    slide: u64,
    cache: HashMap<u64, Rc<[Frame]>>,
    /// What the ELF lacks, for the report.
    pub notes: Vec<String>,
}

impl Symbolizer {
    /// Reads the ELF at `path`.
    pub fn open(path: &Path) -> Result<Symbolizer, String> {
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read the kernel ELF {}: {e}", path.display()))?;
        Symbolizer::from_elf(&data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses an ELF image.
    pub fn from_elf(data: &[u8]) -> Result<Symbolizer, String> {
        let file = object::File::parse(data).map_err(|e| format!("not an ELF file: {e}"))?;
        let mut symbols: Vec<Symbol> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                Some(Symbol {
                    addr: s.address(),
                    size: s.size(),
                    name: demangle(s.name().ok()?),
                })
            })
            .collect();
        symbols.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));
        let text = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address() + s.size()))
            .collect();
        let mut notes = Vec::new();
        if symbols.is_empty() {
            notes.push("the kernel ELF has no function symbols (stripped?)".into());
        }
        let has = |name: &str| file.section_by_name(name).is_some_and(|s| s.size() > 0);
        let dwarf = if has(".debug_info") && has(".debug_line") {
            Some(load_dwarf(&file)?)
        } else {
            notes.push(
                "the kernel ELF has no DWARF (.debug_info, .debug_line): names come from the \
                 symbol table, without inlined frames or lines, and no tasklist_lock hold \
                 sections; build the kernel with `debug = \"limited\"` (workspace Cargo.toml)"
                    .into(),
            );
            None
        };
        Ok(Symbolizer {
            dwarf,
            symbols,
            text,
            slide: 0,
            cache: HashMap::new(),
            notes,
        })
    }

    /// Whether names come with inlined frames and lines.
    pub fn has_dwarf(&self) -> bool {
        self.dwarf.is_some()
    }

    /// The ELF address of the function whose plain path is `path` or ends
    /// in `::path` (the first, if several).
    pub fn symbol_address(&self, path: &str) -> Option<u64> {
        let suffix = format!("::{path}");
        self.symbols
            .iter()
            .find(|s| {
                let p = plain_path(&s.name);
                p == path || p.ends_with(&suffix)
            })
            .map(|s| s.addr)
    }

    /// The ELF symbol (address, size) named `path` (see [`Self::symbol_address`]).
    pub fn symbol_range(&self, path: &str) -> Option<(u64, u64)> {
        let addr = self.symbol_address(path)?;
        let s = self.symbols.iter().find(|s| s.addr == addr)?;
        Some((s.addr, s.size))
    }

    /// Sets the slide from where `kernel_main` ran.
    pub fn set_runtime_kernel_main(&mut self, runtime: u64) -> Result<(), String> {
        let elf = self
            .symbol_address("kernel_main")
            .ok_or("the kernel ELF has no kernel_main symbol")?;
        self.set_slide(runtime.wrapping_sub(elf));
        Ok(())
    }

    /// Runtime address minus ELF address.
    pub fn slide(&self) -> u64 {
        self.slide
    }

    /// Sets [`Self::slide`].
    pub fn set_slide(&mut self, slide: u64) {
        if slide != self.slide {
            self.slide = slide;
            self.cache.clear();
        }
    }

    /// The frames at runtime address `addr`, caller first: the function
    /// and, inside it, the functions inlined at that point down to the
    /// innermost. `leaf` is the interrupted instruction; any other frame is
    /// a return address, looked up at `addr - 1`.
    pub fn frames(&mut self, addr: u64, leaf: bool) -> Rc<[Frame]> {
        let probe = addr.wrapping_sub(self.slide).wrapping_sub(u64::from(!leaf));
        if let Some(f) = self.cache.get(&probe) {
            return f.clone();
        }
        let in_text = self
            .text
            .iter()
            .any(|&(from, to)| (from..to).contains(&probe));
        let mut frames = if in_text {
            self.dwarf_frames(probe).unwrap_or_default()
        } else {
            Vec::new()
        };
        if frames.is_empty() {
            let name = in_text
                .then(|| self.symbol_at(probe))
                .flatten()
                .map(str::to_string)
                .unwrap_or_else(|| format!("[unknown {addr:#x}]"));
            frames.push(Frame::named(&name));
        }
        let frames: Rc<[Frame]> = frames.into();
        self.cache.insert(probe, frames.clone());
        frames
    }

    /// DWARF's frames for `probe`, caller first; empty when DWARF does not
    /// cover it. A frame DWARF cannot name takes the symbol's name (the
    /// outermost) or is left out (an inlined one).
    fn dwarf_frames(&self, probe: u64) -> Option<Vec<Frame>> {
        let ctx = self.dwarf.as_ref()?;
        let mut iter = ctx.find_frames(probe).skip_all_loads().ok()?;
        let mut inner_first = Vec::new();
        while let Ok(Some(f)) = iter.next() {
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok())
                .map(|raw| demangle(&raw[..]));
            let (file, line) = match &f.location {
                Some(l) => (l.file.map(Rc::from), l.line.filter(|&n| n > 0)),
                None => (None, None),
            };
            inner_first.push((name, file, line));
        }
        let outermost = inner_first.len().checked_sub(1)?;
        let mut frames = Vec::with_capacity(inner_first.len());
        for (i, (name, file, line)) in inner_first.into_iter().enumerate().rev() {
            let name = match name {
                Some(n) => n,
                None if i == outermost => self.symbol_at(probe)?.to_string(),
                None => continue,
            };
            frames.push(Frame {
                path: plain_path(&name).into(),
                name: name.into(),
                file,
                line,
            });
        }
        Some(frames)
    }

    /// The function symbol containing ELF address `probe`.
    fn symbol_at(&self, probe: u64) -> Option<&str> {
        let i = self
            .symbols
            .partition_point(|s| s.addr <= probe)
            .checked_sub(1)?;
        let s = &self.symbols[i];
        let next = self.symbols.get(i + 1).map_or(u64::MAX, |n| n.addr);
        let inside = if s.size > 0 {
            probe < s.addr + s.size
        } else {
            probe < next
        };
        inside.then_some(s.name.as_str())
    }
}

fn load_dwarf(file: &object::File<'_>) -> Result<addr2line::Context<Reader>, String> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, String> {
        let data = match file.section_by_name(id.name()) {
            Some(s) => s
                .uncompressed_data()
                .map_err(|e| format!("section {}: {e}", id.name()))?,
            None => Cow::Borrowed(&[][..]),
        };
        Ok(gimli::EndianRcSlice::new(Rc::from(&*data), endian))
    };
    let dwarf = gimli::Dwarf::load(load)?;
    addr2line::Context::from_dwarf(dwarf).map_err(|e| format!("reading DWARF: {e}"))
}
