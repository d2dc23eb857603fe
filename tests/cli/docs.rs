//! The documentation cannot drift from the code: every relative link in README.md and
//! docs/ leads to a file (and heading) that exists, and docs/recipes.md documents exactly
//! the recipe keys the parser accepts, which are read from the parser itself (each
//! section's error for an unknown key lists the keys it allows).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Format, Toml};
use radrun_runner::recipe::{RandomSearch, Recipe, Sweep};

use crate::common::repo;

/// The Markdown files of the documentation.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    files.extend(
        radrun_data::testing::files_under(&repo().join("docs"))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "md")),
    );
    files
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].trim().to_string());
            }
        }
    }
    targets
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation but `-` and `_`
/// removed.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of a Markdown file.
fn anchors(text: &str) -> BTreeSet<String> {
    text.lines().filter(|l| l.starts_with('#')).map(|l| anchor(l.trim_start_matches('#'))).collect()
}

/// Why a relative link of `document` does not resolve, if it does not.
fn broken(document: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, heading) = target.split_once('#').unwrap_or((target, ""));
    let path = if file.is_empty() { document.to_path_buf() } else { document.parent().unwrap().join(file) };
    if !path.exists() {
        return Some(format!("{target}: no file {}", path.display()));
    }
    let text = if path.is_file() { std::fs::read_to_string(&path).unwrap_or_default() } else { String::new() };
    (!heading.is_empty() && !anchors(&text).contains(heading)).then(|| format!("{target}: no heading #{heading}"))
}

#[test]
fn every_relative_link_of_the_documentation_resolves() {
    let documents = documents();
    assert!(documents.len() >= 8, "README.md and the book in docs/: {documents:?}");
    let mut links = 0;
    let mut problems = Vec::new();
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for target in link_targets(&text) {
            links += 1;
            if let Some(problem) = broken(document, &target) {
                problems.push(format!("{}: {problem}", document.display()));
            }
        }
    }
    assert!(links >= 20, "only {links} links found: the parser lost them");
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn a_broken_link_is_found() {
    let readme = repo().join("README.md");
    assert_eq!(link_targets("see [the book](docs/README.md) and ![x](a.png)"), ["docs/README.md", "a.png"]);
    assert_eq!(broken(&readme, "docs/README.md"), None);
    assert!(broken(&readme, "docs/no-such-chapter.md").is_some());
    assert!(broken(&readme, "docs/README.md#no-such-heading").is_some());
    assert_eq!(anchor(" Stopping, resuming & sharing"), "stopping-resuming--sharing");
}

/// The keys a recipe section accepts, as the parser's error for an unknown key lists them.
fn accepted(toml: &str) -> Vec<String> {
    let error = Figment::from(Toml::string(toml)).extract::<Recipe>().expect_err("an unknown key is refused");
    match error.kind {
        Kind::UnknownField(_, expected) => expected.iter().map(|k| k.to_string()).collect(),
        other => panic!("{toml}: not an unknown-key error: {other}"),
    }
}

/// The model kinds, as the parser's error for an unknown kind lists them.
fn model_kinds() -> Vec<String> {
    let error = Figment::from(Toml::string("[model]\nkind = \"radrun_probe\"\n")).extract::<Recipe>().unwrap_err();
    match error.kind {
        Kind::UnknownVariant(_, expected) => expected.iter().map(|k| k.to_string()).collect(),
        other => panic!("not an unknown-variant error: {other}"),
    }
}

/// The keys of a table as serde writes a value of its type.
fn serialized_keys(value: impl serde::Serialize) -> Vec<String> {
    match toml::Value::try_from(value).expect("serializable") {
        toml::Value::Table(table) => table.keys().cloned().collect(),
        other => panic!("not a table: {other}"),
    }
}

/// Every dotted recipe key the parser accepts.
fn parser_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::from(["model.kind".to_string()]);
    let probe = "radrun_probe = 1\n";
    let mut add = |prefix: &str, names: Vec<String>| keys.extend(names.into_iter().map(|k| format!("{prefix}.{k}")));
    for section in ["data", "augment", "train", "split", "eval", "run", "slurm", "report", "track"] {
        add(section, accepted(&format!("[{section}]\n{probe}")));
    }
    let kinds = model_kinds();
    assert!(kinds.len() >= 3, "model kinds: {kinds:?}");
    for kind in kinds {
        add("model", accepted(&format!("[model]\nkind = \"{kind}\"\n{probe}")));
    }
    add("train.phases", accepted(&format!("[[train.phases]]\n{probe}")));
    add("augment.volume", accepted(&format!("[augment.volume]\n{probe}")));
    // [sweep] and [sweep.random] take any dotted key as a swept one (their `grid` and
    // `keys` maps are flattened into the section), so an unknown key is not an error
    // there: their other keys are those of a value with every field set
    let random = RandomSearch { trials: 1, seed: 1, keys: Default::default() };
    let zip = [("train.seed".to_string(), vec![1.into()])].into_iter().collect();
    let sweep =
        Sweep { zip, seeds: vec![1], max_runs: Some(1), random: Some(random.clone()), grid: Default::default() };
    add("sweep", serialized_keys(&sweep));
    add("sweep", vec!["grid".into()]);
    add("sweep.random", serialized_keys(&random));
    add("sweep.random", vec!["keys".into()]);
    keys
}

/// The keys docs/recipes.md documents: the first cell of its table rows.
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_string()))
        .filter(|key| key.contains('.'))
        .collect()
}

#[test]
fn docs_recipes_md_documents_exactly_the_keys_the_parser_accepts() {
    let parser = parser_keys();
    assert!(parser.len() >= 60, "{} keys read from the parser: {parser:?}", parser.len());
    let documented = documented_keys(&std::fs::read_to_string(repo().join("docs/recipes.md")).unwrap());
    let undocumented: Vec<&String> = parser.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&parser).collect();
    assert!(undocumented.is_empty(), "keys the parser accepts but docs/recipes.md does not document: {undocumented:?}");
    assert!(unknown.is_empty(), "keys docs/recipes.md documents but the parser refuses: {unknown:?}");
}
