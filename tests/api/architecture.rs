//! The mechanical invariants of ARCHITECTURE.md, checked on the source: which module may
//! import what, that only `store` writes SQL, and that no two top-level modules import each
//! other, directly or around a circle. Code under `#[cfg(test)]` is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's source files with their text, tests cut off, by path under `src/`.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, text)
        })
        .collect()
}

/// The top-level module a file belongs to (`api/score.rs` -> `api`, `vocab.rs` -> `vocab`).
fn module_of(path: &str) -> String {
    path.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The top-level modules a file names through `crate::`, and the crates it names by path or
/// `use`.
fn references(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut modules = BTreeSet::new();
    let mut crates = BTreeSet::new();
    let ident = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        modules.insert(ident(&text[at + "crate::".len()..]));
    }
    for name in [
        "sqlx",
        "tokio",
        "axum",
        "reqwest",
        "tower",
        "tower_http",
        "polars",
    ] {
        let pattern = format!("{name}::");
        if text.match_indices(&pattern).any(|(at, _)| {
            !text[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }) {
            crates.insert(name.to_owned());
        }
    }
    (modules, crates)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources() {
        let from = module_of(&path);
        if from == "lib" || from == "main" {
            continue;
        }
        let entry = graph.entry(from.clone()).or_default();
        entry.extend(references(&text).0.into_iter().filter(|m| *m != from));
    }
    graph
}

#[test]
fn no_two_modules_import_each_other_even_around_a_circle() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_bottom_layers_use_no_io_crates_and_import_only_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("vocab", &[][..]),
        ("counters", &[][..]),
        ("config", &["vocab"][..]),
        ("features", &["vocab"][..]),
        ("model", &["vocab", "features"][..]),
        ("policy", &["vocab"][..]),
    ]);
    for (path, text) in sources() {
        let module = module_of(&path);
        let Some(allowed) = allowed.get(module.as_str()) else {
            continue;
        };
        let (modules, crates) = references(&text);
        assert!(
            crates.is_empty(),
            "{path} uses {crates:?}: {module} does no IO"
        );
        for m in modules.iter().filter(|m| **m != module) {
            assert!(
                allowed.contains(&m.as_str()),
                "{path} imports crate::{m}; {module} may import only {allowed:?}"
            );
        }
    }
}

#[test]
fn only_store_writes_sql_and_it_keeps_its_pool() {
    for (path, text) in sources() {
        if module_of(&path) == "store" {
            assert!(
                !text.contains("pub fn pool("),
                "{path}: the store's pool is not public"
            );
            continue;
        }
        assert!(
            !references(&text).1.contains("sqlx"),
            "{path} uses sqlx: SQL belongs in store"
        );
    }
}

#[test]
fn the_core_never_imports_the_simulator_or_the_evaluations() {
    for (path, text) in sources() {
        let module = module_of(&path);
        if module == "sim" || module == "cli" {
            continue;
        }
        assert!(
            !references(&text).0.contains("sim"),
            "{path} imports crate::sim, which is built on the core and never imported by it"
        );
    }
}

#[test]
fn handlers_store_samples_through_the_ingestor_and_start_no_worker() {
    for (path, text) in sources() {
        if module_of(&path) != "api" {
            continue;
        }
        assert!(
            !text.contains("store_batch("),
            "{path}: handlers store batches with Ingestor::store, which tells scoring"
        );
        for worker in [
            "scoring::writer",
            "scoring::on_ingest",
            "scoring::slot::spawn",
        ] {
            assert!(!text.contains(worker), "{path} reaches into {worker}");
        }
    }
}
