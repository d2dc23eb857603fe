//! The shape of the code, read from its sources: the runner's folders import only the
//! layers below them, no two modules of the `data` crate import each other (directly or
//! round a longer circle), and no function outside tests grows past 80 lines. These are
//! what ARCHITECTURE.md draws; the checks keep the drawing true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The runner's top-level modules, lowest first: each may import only those before it.
const RUNNER_LAYERS: [&str; 8] = ["store", "recipe", "report", "error", "run", "cluster", "cli", "commands"];

/// Every crate of the workspace (its folder under `crates/`).
const CRATES: [&str; 7] = ["data", "metrics", "settings", "models", "train", "runner", "radrun"];

/// The crates `radrun` (the light binary) is built from: none may depend on libtorch.
const WITHOUT_LIBTORCH: [&str; 4] = ["data", "metrics", "settings", "runner"];

/// The longest function body allowed outside tests, in lines (signature to closing brace).
const LONGEST_FUNCTION: usize = 80;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The code of a source file without its comments (doc links name modules without
/// importing them).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn identifier(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The first segment of every `crate::` path in `code`, `use crate::{a::X, b}` giving
/// `a` and `b`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(identifier(group[start..].trim_start()).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(identifier(group[start..].trim_start()).to_string());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(identifier(rest).to_string());
        }
    }
    found.remove("");
    found
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// For each top-level module of a crate's `src`, the other top-level modules it names:
/// `crate::m`, or an item `lib.rs` re-exports from `m` (`pub use m::{Item, ...}`).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = code(&src.join("lib.rs"));
    let mut modules = BTreeSet::new();
    let mut reexported: BTreeMap<String, String> = BTreeMap::new();
    for statement in lib.split(';') {
        let statement = statement.trim();
        if let Some(name) = statement.strip_prefix("pub mod ").or_else(|| statement.strip_prefix("mod ")) {
            modules.insert(identifier(name).to_string());
        }
        if let Some(path) = statement.strip_prefix("pub use ") {
            let module = identifier(path).to_string();
            let items = path.split_once("::").map_or("", |(_, items)| items);
            for item in items.split([',', '{', '}', ' ', '\n']).filter(|i| !i.is_empty()) {
                reexported.insert(item.to_string(), module.clone());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a file").as_os_str().to_string_lossy();
        let owner = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&owner) {
            continue;
        }
        for name in crate_paths(&code(&file)) {
            let target = if modules.contains(&name) { Some(name) } else { reexported.get(&name).cloned() };
            if let Some(target) = target.filter(|t| *t != owner) {
                graph.get_mut(&owner).expect("a module").insert(target);
            }
        }
    }
    graph
}

#[test]
fn the_runner_folders_import_only_the_layers_below_them() {
    let graph = module_graph(&workspace().join("crates/runner/src"));
    let modules: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(
        modules,
        RUNNER_LAYERS.into_iter().collect(),
        "the runner's top-level modules changed: update the layers"
    );
    let layer = |m: &str| RUNNER_LAYERS.iter().position(|l| *l == m).expect("a layer");
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, targets)| targets.iter().map(move |to| (from, to)))
        .filter(|(from, to)| layer(to) >= layer(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(upward.is_empty(), "imports against the layers {RUNNER_LAYERS:?}: {upward:?}");
}

#[test]
fn no_module_of_the_data_crate_imports_one_that_imports_it() {
    let graph = module_graph(&workspace().join("crates/data/src"));
    assert!(graph.len() >= 5, "the data crate's modules were not found: {graph:?}");
    assert_eq!(find_circle(&graph), None, "a circle of imports in crates/data/src");
}

#[test]
fn a_circle_of_imports_is_found() {
    // the checks above prove nothing unless the circle finder sees a circle
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(find_circle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let grouped = crate_paths("use crate::{store::RunDir, recipe::{Plan, plan}, error};\nlet x = crate::run::go();");
    assert_eq!(grouped, ["error", "recipe", "run", "store"].into_iter().map(String::from).collect());
}

/// Functions of `text` (formatted by rustfmt) longer than [`LONGEST_FUNCTION`] lines,
/// leaving out the `#[cfg(test)]` module at the end of a file.
fn long_functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(lines.len());
    let mut long = Vec::new();
    for (start, line) in lines[..end].iter().enumerate() {
        let trimmed = line.trim_start();
        let signature = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ", "async fn ", "const fn ", "unsafe fn "]
            .iter()
            .find_map(|prefix| trimmed.strip_prefix(prefix));
        let Some(rest) = signature else { continue };
        let indent = &line[..line.len() - trimmed.len()];
        let closing = format!("{indent}}}");
        // a declaration without a body (in a trait) ends with `;` before any `{`
        let body = lines[start..end].iter().position(|l| l.trim_end().ends_with('{'));
        let declaration = lines[start..end].iter().position(|l| l.trim_end().ends_with(';'));
        if body.is_none() || declaration.is_some_and(|d| Some(d) < body) {
            continue;
        }
        if line.trim_end().ends_with('}') {
            continue;
        }
        if let Some(length) = lines[start..end].iter().position(|l| l.trim_end() == closing)
            && length + 1 > LONGEST_FUNCTION
        {
            long.push((identifier(rest).to_string(), length + 1));
        }
    }
    long
}

#[test]
fn no_function_outside_tests_is_longer_than_80_lines() {
    let present: BTreeSet<String> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, CRATES.iter().map(|c| c.to_string()).collect(), "a crate was added or removed: update CRATES");
    let mut long = Vec::new();
    for krate in CRATES {
        for file in rust_files(&workspace().join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for (name, length) in long_functions(&text) {
                long.push(format!("{}: {name} ({length} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions to break into named steps:\n{}", long.join("\n"));
}

#[test]
fn a_long_function_is_found() {
    let body = "    let x = 1;\n".repeat(LONGEST_FUNCTION);
    let text = format!(
        "fn short() {{\n}}\n\npub fn long(a: u32) -> u32 {{\n{body}}}\n\n#[cfg(test)]\nmod tests {{\n    fn t() {{\n{body}    }}\n}}\n"
    );
    assert_eq!(long_functions(&text), vec![("long".to_string(), LONGEST_FUNCTION + 2)]);
}

/// The shared libraries a binary of the build names (readelf, from binutils, which the
/// linker comes with).
fn needed_libraries(binary: &Path) -> Vec<String> {
    let out = std::process::Command::new("readelf").arg("-d").arg(binary).output().expect("readelf runs");
    assert!(out.status.success(), "readelf -d {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("Shared library: [").map(|(_, rest)| rest.trim_end_matches(']').to_string()))
        .collect()
}

/// `radrun` runs its light commands without `libtorch.so` and the CUDA libraries (about
/// 0.2 s and 300 MB at every start here); `radrun-torch`, to which it hands the commands
/// that need libtorch, links them, `libtorch_cuda.so` included where the libtorch has it
/// (the linker would drop it, and CUDA would silently be unavailable).
#[test]
fn radrun_leaves_libtorch_and_cuda_to_radrun_torch() {
    let light = PathBuf::from(env!("CARGO_BIN_EXE_radrun"));
    let torch = light.with_file_name("radrun-torch");
    let light_needs = needed_libraries(&light);
    let from_libtorch = |l: &&String| l.starts_with("libtorch") || l.starts_with("libc10");
    assert_eq!(light_needs.iter().filter(from_libtorch).count(), 0, "radrun needs {light_needs:?}");
    let torch_needs = needed_libraries(&torch);
    assert!(torch_needs.iter().any(|l| l == "libtorch.so") && torch_needs.iter().any(|l| l == "libtorch_cpu.so"));
    // the venv's libtorch (scripts/env.sh): lib/python3.X/site-packages/torch/lib
    let cuda_there =
        std::env::var_os("RADRUN_VENV").and_then(|venv| std::fs::read_dir(Path::new(&venv).join("lib")).ok());
    let cuda_there = cuda_there
        .into_iter()
        .flatten()
        .flatten()
        .any(|python| python.path().join("site-packages/torch/lib/libtorch_cuda.so").exists());
    if cuda_there {
        assert!(torch_needs.iter().any(|l| l == "libtorch_cuda.so"), "{torch_needs:?}");
    }
}

/// The crates of the light binary cannot reach libtorch: none of them lists tch,
/// torch-sys or a crate that does among its dependencies, so the compiler refuses
/// tensor code in them (the linker could not keep libtorch out of `radrun` when the
/// runner depended on the models and train crates: see ARCHITECTURE.md).
#[test]
fn the_crates_of_the_light_binary_do_not_depend_on_libtorch() {
    let forbidden = ["tch", "torch-sys", "radrun-models", "radrun-train", "radrun"];
    for krate in WITHOUT_LIBTORCH {
        let manifest = workspace().join("crates").join(krate).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let dependencies = manifest.get("dependencies").and_then(|d| d.as_table()).expect("[dependencies]");
        let reached: Vec<&String> = dependencies.keys().filter(|name| forbidden.contains(&name.as_str())).collect();
        assert!(reached.is_empty(), "crates/{krate} depends on {reached:?}");
    }
    // and the light binary uses nothing but the runner
    let main = std::fs::read_to_string(workspace().join("crates/radrun/src/main.rs")).unwrap();
    assert!(main.contains("radrun_runner::main()") && !main.contains("radrun::"), "{main}");
}

/// Without `radrun-torch` beside it, a command that needs libtorch says what is missing
/// and how to get it (exit 3, the environment's fault), and the light commands still run.
#[test]
fn a_missing_radrun_torch_is_named_with_the_fix() {
    let scratch = tempfile::tempdir().unwrap();
    let alone = scratch.path().join("radrun");
    // copied by `cp`, not by this process: a file this process held open for writing
    // would be inherited by the children other tests fork meanwhile, and executing it
    // would fail with "text file busy" (ETXTBSY) until they exec
    let copied = std::process::Command::new("cp").arg(env!("CARGO_BIN_EXE_radrun")).arg(&alone).status().unwrap();
    assert!(copied.success());
    let out = std::process::Command::new(&alone).arg("doctor").output().unwrap();
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{message}");
    assert!(message.contains("radrun-torch") && message.contains("scripts/setup.sh"), "{message}");
    let version = std::process::Command::new(&alone).arg("--version").output().unwrap();
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("radrun "));
}
