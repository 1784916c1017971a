//! The floor-plan check: a crate's modules import one another only as the module table in its
//! crate docs allows, and no import runs in a circle.
//!
//! The table is the one `lib.rs` opens with, one row per top-level module, lowest first:
//!
//! ```text
//! //! | module | owns | imports |
//! //! |---|---|---|
//! //! | [`time`] | the clock | - |
//! //! | [`links`] | where links go | labels, time |
//! //! | [`collector`] | the wiring | all of the above |
//! ```
//!
//! What is checked, over every `crate::`, `super::` and `self::` path of the crate's sources
//! (comments, strings and `#[cfg(test)]` items left out: unit tests may reach what they test):
//! - every top-level module has a row, and imports only the modules its row names, each of
//!   them in a row above its own (so the top-level graph has no cycle);
//! - no module reaches into the crate root (`crate::Item` that is not a module): `lib.rs` is
//!   the crate's face, its re-exports point down and nothing points back up at them;
//! - the files of one module form no cycle either (a file may use its parent's items, which is
//!   the parent declaring it, but two siblings may not need each other).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One row of the table.
#[derive(Debug)]
struct Row {
    module: String,
    /// The modules it may import, as paths (`trace::context` allows that submodule only);
    /// `None`: "all of the above".
    imports: Option<BTreeSet<String>>,
}

/// Whether `target` (a module path) is `allowed` or inside it.
fn within(target: &[String], allowed: &str) -> bool {
    let allowed: Vec<&str> = allowed.split("::").collect();
    target.len() >= allowed.len() && target.iter().zip(&allowed).all(|(t, a)| t == a)
}

/// Checks the crate whose sources are in `src` (its `lib.rs` carries the table); returns one
/// line per violation, empty when the plan holds.
pub fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let rows = table(&lib);
    let files = sources(src);
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut out = Vec::new();
    if rows.is_empty() {
        out.push("lib.rs has no module table (| module | owns | imports |)".to_owned());
        return out;
    }
    let position: BTreeMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.module.as_str(), i))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        for import in row.imports.iter().flatten() {
            let top = import.split("::").next().unwrap_or_default();
            match position.get(top) {
                Some(&j) if j < i => {}
                Some(_) => out.push(format!(
                    "table: {} may import {import}, which is not above it",
                    row.module
                )),
                None => out.push(format!(
                    "table: {} names {import}, which has no row",
                    row.module
                )),
            }
        }
    }
    // Edges between files, and between top-level modules.
    let mut file_edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path) in &files {
        let Some(top) = module.first() else { continue };
        let Some(&row_at) = position.get(top.as_str()) else {
            out.push(format!("{top}: no row in the module table"));
            continue;
        };
        let row = &rows[row_at];
        let text = strip(&std::fs::read_to_string(path).expect("read a source file"));
        for target in references(&text, module, &modules) {
            let Some(target_top) = target.first() else {
                out.push(format!(
                    "{}: imports the crate root (an item of lib.rs); import it from its module",
                    shown(module)
                ));
                continue;
            };
            if target_top != top {
                let allowed = match &row.imports {
                    Some(list) => list.iter().any(|a| within(&target, a)),
                    None => position
                        .get(target_top.as_str())
                        .is_some_and(|&j| j < row_at),
                };
                if !allowed {
                    out.push(format!(
                        "{}: imports {}, which its row does not allow",
                        shown(module),
                        shown(&target)
                    ));
                }
            }
            // A file using its own ancestors is the ancestor declaring it; only the other
            // direction, and siblings, make edges that can close a circle.
            if !module.starts_with(&target) && !target.starts_with(module) {
                file_edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    out.extend(cycles(&file_edges).into_iter().map(|c| {
        let names: Vec<String> = c.iter().map(|m| shown(m)).collect();
        format!("import cycle: {}", names.join(" -> "))
    }));
    out
}

fn shown(module: &[String]) -> String {
    if module.is_empty() {
        "lib.rs".to_owned()
    } else {
        module.join("::")
    }
}

/// The rows of the module table in the crate docs.
fn table(lib: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(line) = line.trim().strip_prefix("//!") else {
            continue;
        };
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        // The table starts at its header and ends at the first line that is not a row.
        if cells.get(1) == Some(&"module") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.trim().starts_with('|') {
            break;
        }
        // "| [`name`] | owns | imports |" splits into ["", name, owns, imports, ""].
        if cells.len() < 5 {
            continue;
        }
        // A public module is a link (`` [`trace`] ``), a private one plain code (`` `env` ``).
        let name = cells[1].trim_start_matches('[').trim_end_matches(']');
        let Some(module) = name
            .strip_prefix('`')
            .and_then(|m| m.strip_suffix('`'))
            .filter(|m| m.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .map(str::to_owned)
        else {
            continue;
        };
        let imports = cells[cells.len() - 2];
        let imports = if imports.starts_with("all of the above") {
            None
        } else {
            Some(
                imports
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty() && *m != "-")
                    .map(|m| m.trim_matches('`').to_owned())
                    .collect(),
            )
        };
        rows.push(Row { module, imports });
    }
    rows
}

/// Every source file below `src` by its module path (`http/body.rs` -> `[http, body]`);
/// `lib.rs` and `main.rs` (the crate roots) are left out.
fn sources(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("below src");
            let mut module: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
                continue;
            }
            out.insert(module, path);
        }
    }
    out
}

/// `text` without comments, string and char literals, and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(len) = raw_string(rest) {
            out.push_str("\"\"");
            i += len;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && char_literal(rest).is_some() {
            i += char_literal(rest).unwrap_or(1);
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_items(&out)
}

/// The length of a raw string literal at the start of `s` (`r"…"`, `r#"…"#`, `br"…"`).
fn raw_string(s: &str) -> Option<usize> {
    let after_r = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(s.len() - body.len() + end + close.len())
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{e9}'`), not a lifetime.
fn char_literal(s: &str) -> Option<usize> {
    let rest = &s[1..];
    if let Some(escaped) = rest.strip_prefix('\\') {
        let end = escaped.find('\'')?;
        return Some(1 + 1 + end + 1);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then(|| 1 + c.len_utf8() + 1)
}

/// `text` without the items that follow a `#[cfg(test)]` (up to their closing brace or `;`).
fn strip_test_items(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices().skip("#[cfg(test)]".len()) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The modules that the paths in `text` (of the file of `module`) refer to: each `crate::`,
/// `super::` and `self::` path, and each path of a `use` group, resolved to the longest module
/// it names; `[]` is the crate root.
fn references(
    text: &str,
    module: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("::") {
        // The segment before `::` must be a whole word (`crate`, `super`, `self`) that starts
        // the path (not `foo::crate`, not `$crate`).
        let start = text[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let word = &text[start..at];
        if !matches!(word, "crate" | "super" | "self") {
            continue;
        }
        let before = text[..start].trim_end();
        if before.ends_with("::") || before.ends_with('$') {
            continue;
        }
        let mut base: Vec<String> = match word {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut tail = &text[at + 2..];
        // `super::super::…`
        while let Some(next) = tail.strip_prefix("super::") {
            base.pop();
            tail = next;
        }
        for path in use_paths(tail) {
            let mut full = base.clone();
            let mut best = base.clone();
            for segment in path {
                full.push(segment);
                if modules.contains(&full) {
                    best = full.clone();
                } else {
                    break;
                }
            }
            out.insert(best);
        }
    }
    out
}

/// The paths at the start of `s`: `a::b::C` gives `[[a, b, C]]`; `{a::B, c::{D, e}}` gives
/// one path per leaf; `*` and `self` add nothing.
fn use_paths(s: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut prefix = Vec::new();
    collect(s.trim_start(), &mut prefix, &mut out);
    out
}

fn collect<'a>(mut s: &'a str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    let depth = prefix.len();
    loop {
        s = s.trim_start();
        if let Some(group) = s.strip_prefix('{') {
            s = group;
            loop {
                s = s.trim_start();
                if let Some(after) = s.strip_prefix('}') {
                    s = after;
                    break;
                }
                s = collect(s, prefix, out).trim_start();
                match s.strip_prefix(',') {
                    Some(after) => s = after,
                    None => {
                        s = s.strip_prefix('}').unwrap_or(s);
                        break;
                    }
                }
            }
            prefix.truncate(depth);
            return s;
        }
        let len = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let word = &s[..len];
        if !word.is_empty() && word != "self" {
            prefix.push(word.to_owned());
        }
        s = &s[len..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => {
                out.push(prefix.clone());
                prefix.truncate(depth);
                return s;
            }
        }
    }
}

/// The cycles of a directed graph, each once (as found by a depth-first search).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
        out: &mut Vec<Vec<Vec<String>>>,
    ) {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    out.push(cycle);
                }
                Some(Mark::Done) => {}
                None => visit(next, edges, marks, stack, out),
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            visit(node, edges, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(list: &[&str]) -> BTreeSet<Vec<String>> {
        list.iter()
            .map(|m| m.split("::").map(str::to_owned).collect())
            .collect()
    }

    fn refs(text: &str, module: &str) -> Vec<String> {
        let all = modules(&["a", "a::x", "a::y", "b", "b::z"]);
        let module: Vec<String> = module.split("::").map(str::to_owned).collect();
        references(&strip(text), &module, &all)
            .into_iter()
            .map(|m| shown(&m))
            .collect()
    }

    #[test]
    fn paths_resolve_to_the_longest_module() {
        assert_eq!(refs("use crate::b::z::Thing;", "a::x"), ["b::z"]);
        assert_eq!(
            refs("use crate::{a::y::Q, b::{self, z::R}};", "a::x"),
            ["a::y", "b", "b::z"]
        );
        assert_eq!(refs("let v = super::y::f();", "a::x"), ["a::y"]);
        assert_eq!(refs("use super::super::b::Z;", "a::x"), ["b"]);
        assert_eq!(refs("use crate::Shared;", "a"), ["lib.rs"]);
    }

    #[test]
    fn comments_strings_and_tests_are_not_imports() {
        let text = r##"
            // use crate::b::z;
            /* crate::b */
            let s = "crate::b::z";
            let r = r#"crate::b"#;
            let c = '"';
            #[cfg(test)]
            mod tests { use crate::b::z::X; fn f() { let _ = crate::b::Y; } }
            use crate::a::y::Kept;
        "##;
        assert_eq!(refs(text, "a::x"), ["a::y"]);
    }

    #[test]
    fn a_cycle_is_found() {
        let edge = |a: &str, b: &str| (vec![a.to_owned()], vec![b.to_owned()]);
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (from, to) in [
            edge("a", "b"),
            edge("b", "c"),
            edge("c", "a"),
            edge("c", "d"),
        ] {
            edges.entry(from).or_default().insert(to);
        }
        let found = cycles(&edges);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), 4, "{found:?}");
    }

    #[test]
    fn the_table_is_read() {
        let lib = "//! | module | owns | imports |\n//! |---|---|---|\n//! | [`time`] | clock | - |\n//! | `links` | links | time, `labels`, trace::context |\n//! | [`web`] | pages | all of the above |\n";
        let rows = table(lib);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].imports.as_ref().map(BTreeSet::len), Some(0));
        assert_eq!(rows[1].module, "links");
        assert!(rows[1]
            .imports
            .as_ref()
            .is_some_and(|i| i.contains("labels")));
        assert!(rows[2].imports.is_none());
        let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
        assert!(within(&path("trace::context"), "trace::context"));
        assert!(!within(&path("trace"), "trace::context"));
        assert!(within(&path("trace::otlp"), "trace"));
    }

    #[test]
    fn a_crate_that_breaks_its_plan_is_reported() {
        let dir = std::env::temp_dir().join(format!("floor-plan-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "lib.rs",
            "//! | module | owns | imports |\n//! |---|---|---|\n//! | `low` | l | - |\n//! | `high` | h | low |\npub struct Root;\n",
        );
        write("low.rs", "use crate::high::H;\npub struct L;\n");
        write(
            "high/mod.rs",
            "mod a;\nmod b;\npub struct H;\nuse crate::low::L;\n",
        );
        write(
            "high/a.rs",
            "use super::b::B;\npub struct A;\nfn f() -> crate::Root { crate::Root }\n",
        );
        write("high/b.rs", "use super::a::A;\npub struct B;\n");
        let mut found = violations(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                "high::a: imports the crate root (an item of lib.rs); import it from its module",
                "import cycle: high -> low -> high",
                "import cycle: high::a -> high::b -> high::a",
                "low: imports high, which its row does not allow",
            ],
            "{found:#?}"
        );
    }
}
