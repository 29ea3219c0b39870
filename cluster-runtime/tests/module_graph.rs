//! The runtime's modules depend on each other in one direction only: no cycle between
//! top-level modules (`node`, `handle`, `services`, `config`, …) and none between files.
//!
//! Every `crate::…` path in a file (in `use` items, groups included, and in code) is an
//! edge from that file's module to the module that defines the path. A path through a
//! re-export (`pub use child::Name` in a parent) is followed to where `Name` is defined.
//! A parent declaring or re-exporting its own children is structure, not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/node/peers.rs` is `[node, peers]`; `src/node/mod.rs` is `[node]`; `src/lib.rs` is `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Source without comments, so doc links and prose do not count as dependencies.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named after `prefix` (`crate::`), expanding `{a, b::{c, d}}` groups.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(i) = text[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let (paths, end) = parse_tree(text, at);
        out.extend(paths);
        at = end.max(at);
    }
    out
}

/// Parses `seg::seg::{tree, tree}` or `seg::seg` starting at `at`.
fn parse_tree(text: &str, mut at: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix = Vec::new();
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            let mut all = Vec::new();
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    let end = (at + 1).min(bytes.len());
                    return (all.into_iter().map(|p: Vec<String>| [prefix.clone(), p].concat()).collect(), end);
                }
                let (sub, end) = parse_tree(text, at);
                all.extend(sub);
                at = end;
                // Skip `as alias`.
                while at < bytes.len() && !matches!(bytes[at], b',' | b'}') {
                    at += 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at == start {
            return (vec![prefix], at);
        }
        prefix.push(text[start..at].to_owned());
        if text[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

struct Crate {
    modules: BTreeSet<Module>,
    /// (module, name) → the module `name` is re-exported from.
    reexports: BTreeMap<(Module, String), Module>,
    uses: BTreeMap<Module, Vec<Vec<String>>>,
}

fn load() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut c = Crate { modules: BTreeSet::new(), reexports: BTreeMap::new(), uses: BTreeMap::new() };
    for f in &all {
        c.modules.insert(module_of(&src, f));
    }
    for f in &all {
        let m = module_of(&src, f);
        let text = code(&fs::read_to_string(f).expect("read"));
        let mut paths = paths_after(&text, "crate::");
        // Each `pub use` statement, whole (a group may span lines).
        let statements: Vec<String> =
            text.split(';').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        for statement in &statements {
            let line = statement.as_str();
            let line = match line.find("pub use ").or_else(|| line.find("pub(crate) use ")) {
                // At the statement's start, or after an item or attribute before it.
                Some(i) if line[..i].trim().is_empty() || line[..i].trim_end().ends_with(['}', ']']) => &line[i..],
                _ => continue,
            };
            let Some(rest) = line.strip_prefix("pub use ").or_else(|| line.strip_prefix("pub(crate) use ")) else {
                continue;
            };
            let rest = rest.trim_start_matches("self::");
            let (is_crate, rest) = match rest.strip_prefix("crate::") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            for p in paths_after(&format!("crate::{rest}"), "crate::") {
                let full: Vec<String> = if is_crate { p.clone() } else { [m.clone(), p.clone()].concat() };
                if let Some(name) = full.last() {
                    let target = resolve_module(&c.modules, &full);
                    c.reexports.insert((m.clone(), name.clone()), target);
                }
                if !is_crate {
                    paths.push([m.clone(), p].concat());
                }
            }
        }
        c.uses.insert(m, paths);
    }
    c
}

/// The longest prefix of `path` that is a module.
fn resolve_module(modules: &BTreeSet<Module>, path: &[String]) -> Module {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default()
}

/// The module that defines `path`, following re-exports.
fn defining(c: &Crate, path: &[String]) -> Module {
    let mut m = resolve_module(&c.modules, path);
    let Some(name) = path.get(m.len()) else { return m };
    for _ in 0..8 {
        match c.reexports.get(&(m.clone(), name.clone())) {
            Some(target) if *target != m => m = target.clone(),
            _ => break,
        }
    }
    m
}

fn edges(c: &Crate, level: impl Fn(&Module) -> Module) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, paths) in &c.uses {
        for p in paths {
            let to = defining(c, p);
            let (a, b) = (level(from), level(&to));
            // A module naming itself, or a parent naming its own child, is not a dependency.
            if a == b || b.starts_with(&a) {
                continue;
            }
            g.entry(a).or_default().insert(b);
        }
    }
    g
}

fn find_cycle(g: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        n: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == m).unwrap_or(0);
                    return Some([&stack[i..], std::slice::from_ref(m)].concat());
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(cycle: &[Module]) -> String {
    cycle.iter().map(|m| if m.is_empty() { "crate".to_owned() } else { m.join("::") }).collect::<Vec<_>>().join(" -> ")
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let c = load();
    let g = edges(&c, |m| m.iter().take(1).cloned().collect());
    assert!(g.contains_key(&vec!["node".to_owned()]), "the graph was read: {g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle between top-level modules: {}", show(&cycle));
    }
}

#[test]
fn files_have_no_import_cycle() {
    let c = load();
    let g = edges(&c, Clone::clone);
    assert!(g.len() > 30, "the graph was read: {} modules", g.len());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle between files: {}", show(&cycle));
    }
}

#[test]
fn the_checker_finds_a_cycle_and_follows_reexports() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
    let mut g = BTreeMap::new();
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(find_cycle(&g).map(|c| show(&c)), Some("a -> b -> c -> a".to_owned()));
    let parsed = paths_after("use crate::node::{kernel::Node, peers::{PeerInfo, Peers}};", "crate::");
    assert_eq!(parsed, vec![m("node::kernel::Node"), m("node::peers::PeerInfo"), m("node::peers::Peers")]);
    let c = load();
    assert_eq!(defining(&c, &m("ClusterSystem")), m("node::system"), "crate::ClusterSystem is defined in node::system");
}
