//! From a recipe to a plan: the layered recipe read, its sweep expanded into runs, every
//! run's settings resolved (every default written out) and checked, the dataset layouts
//! and weight files checked, all before any work starts, and a stable id given to each
//! run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use radrun_data::{SettingError, Task};
use radrun_settings::{ModelSettings, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::settings::{Settings, settings_hash};
use super::{
    Distribution, FoldChoice, Origin, RandomSearch, Recipe, RecipeError, RecipeFile, SetFlags, SplitRecipe, Sweep,
    explain, layered, locate,
};

/// Why a recipe cannot be planned: the recipe itself, or a dataset it names.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// A dataset folder of a recipe does not have the expected layout, or cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", radrun_data::paths::path_text(recipe))]
pub struct DatasetError {
    pub recipe: PathBuf,
    #[source]
    pub source: radrun_data::Error,
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// `<recipe name>[-<key>=<value>...]-<8 hex of the settings' hash>`.
    pub id: String,
    /// The swept keys and this run's values, in sweep order.
    pub swept: Vec<(String, Value)>,
    /// Fully resolved settings (paths absolute).
    pub settings: Settings,
}

impl PlannedRun {
    /// Identifies the run's `[data]` section: runs with the same key read the same
    /// decoded images.
    pub fn data_key(&self) -> String {
        serde_json::to_string(&self.settings.data).expect("settings serialize")
    }
}

/// Every run of a recipe.
#[derive(Debug, Clone)]
pub struct Plan {
    pub recipe_path: PathBuf,
    pub recipe_name: String,
    /// Swept keys, in the order of the id and summary columns.
    pub swept_keys: Vec<String>,
    pub runs: Vec<PlannedRun>,
    /// `run.stale_after`: when another process's claim may be taken over.
    pub stale_after: std::time::Duration,
    /// `run.checkpoint_every`: checkpoints within long epochs.
    pub checkpoint_every: std::time::Duration,
    /// `run.jobs`: runs trained at a time (at least 1).
    pub jobs: usize,
    /// The `[slurm]` section.
    pub slurm: super::SlurmSection,
    /// The `[report]` section.
    pub report: super::ReportSection,
    /// The `[track]` section.
    pub track: super::TrackSection,
    /// `track.mlflow` as written (a URI or `"env"`) and the experiment.
    pub mlflow: Option<(String, String)>,
    /// The recipe file and its `--set` flags, to show them and to locate what is found
    /// wrong later.
    source: std::sync::Arc<(RecipeFile, SetFlags)>,
}

impl Plan {
    /// `track.mlflow` resolved: the tracking server's URI (`"env"` read now) and the
    /// experiment; None without MLflow.
    pub fn mlflow_target(&self) -> Result<Option<(String, String)>, String> {
        let Some((written, experiment)) = &self.mlflow else { return Ok(None) };
        let track = super::TrackSection { mlflow: written.clone(), ..super::TrackSection::default() };
        Ok(track.mlflow_uri()?.map(|uri| (uri, experiment.clone())))
    }

    /// The recipe as written.
    pub fn recipe_text(&self) -> &str {
        self.source.0.text()
    }

    /// The `--set` flags given with it, as `key=value`.
    pub fn set_flags(&self) -> Vec<String> {
        self.source.1.0.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect()
    }

    /// `e`, found in `run`'s settings once its data were read, located in the recipe.
    pub fn setting_error(&self, run: &PlannedRun, e: SettingError) -> RecipeError {
        located(&self.source.0, &self.source.1, &run.swept, e)
    }
}

/// One point of the sweep: a value for each swept key.
type Point = Vec<(String, Value)>;

/// Reads, expands, resolves and checks a recipe.
pub fn plan(path: &Path, set: &SetFlags) -> Result<Plan, PlanError> {
    let file = RecipeFile::read(path)?;
    let figment = layered(&file, set);
    let base: Recipe = figment.extract().map_err(|e| explain(&file, set, e, None))?;
    let mut tree: Value = figment.extract().map_err(|e| explain(&file, set, e, None))?;
    if let Value::Dict(_, dict) = &mut tree {
        dict.remove("sweep");
    }
    let points = expand(&file, &base.sweep, &base.split)?;
    let swept_by_user = |k: &str| {
        base.sweep.grid.contains_key(k)
            || base.sweep.zip.contains_key(k)
            || base.sweep.random.as_ref().is_some_and(|r| r.keys.contains_key(k))
            || (k == SEED_KEY && !base.sweep.seeds.is_empty())
    };
    if let Some((key, _)) =
        points.first().into_iter().flatten().find(|(k, _)| swept_by_user(k) && set.0.iter().any(|(s, _)| s == k))
    {
        return Err(RecipeError {
            file: file.path.clone(),
            origin: Origin::SetFlag(key.clone()),
            message: {
                let random = base.sweep.random.as_ref().is_some_and(|r| r.keys.contains_key(key));
                let (table, path) = if random {
                    ("[sweep.random]", vec!["sweep".into(), "random".into(), key.clone()])
                } else {
                    ("[sweep]", vec!["sweep".into(), key.clone()])
                };
                format!(
                    "`{key}` is also swept in {table} (line {}); a --set flag cannot override a sweep: drop the flag, \
                     or the key from {table}",
                    file.line_of(&path).map_or("?".into(), |l| l.to_string())
                )
            },
        }
        .into());
    }
    let swept_keys: Vec<String> =
        points.first().map(|p| p.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    // Each run is resolved and checked on its own: a base that only the sweep makes
    // valid is fine.
    let mut runs = points.into_iter().map(|point| plan_run(&file, set, &tree, point)).collect::<Result<Vec<_>, _>>()?;
    // values that mean the same settings ([0.001, 1e-3], or "auto" and what it means)
    // make one run, the first
    let mut seen = HashSet::new();
    runs.retain(|run| seen.insert(serde_json::to_string(&run.settings).expect("settings serialize")));
    check_inputs(&file, set, &runs)?;
    let stale_after = base
        .run
        .stale_after()
        .map_err(|message| locate(&file, set, "run.stale_after", format!("`run.stale_after` {message}")))?;
    let checkpoint_every = base
        .run
        .checkpoint_every()
        .map_err(|message| locate(&file, set, "run.checkpoint_every", format!("`run.checkpoint_every` {message}")))?;
    let mlflow = mlflow_of(&file, set, &base.track)?;
    if base.run.jobs == 0 {
        let message = "`run.jobs` is 0; it is how many runs train at a time: 1 (one after the other) or more";
        return Err(locate(&file, set, "run.jobs", message.to_string()).into());
    }
    Ok(Plan {
        jobs: usize::from(base.run.jobs),
        recipe_path: file.path.clone(),
        recipe_name: file.name.clone(),
        swept_keys,
        runs,
        stale_after,
        checkpoint_every,
        slurm: base.slurm.clone(),
        report: base.report.clone(),
        track: base.track.clone(),
        mlflow,
        source: std::sync::Arc::new((file, set.clone())),
    })
}

/// `track.mlflow` as written (checked, but `"env"` is read when runs train: `status` or
/// `plan` need not have the variable) and the experiment (default: the recipe's name).
fn mlflow_of(
    file: &RecipeFile,
    set: &SetFlags,
    track: &super::TrackSection,
) -> Result<Option<(String, String)>, RecipeError> {
    if track.mlflow != "env" {
        track.mlflow_uri().map_err(|message| locate(file, set, "track.mlflow", format!("`track.mlflow` {message}")))?;
    }
    let experiment = if track.experiment.is_empty() { file.name.clone() } else { track.experiment.clone() };
    Ok((!track.mlflow.is_empty()).then(|| (track.mlflow.clone(), experiment)))
}

/// The run of one sweep point: the point's values set in the recipe tree, extracted as
/// a typed recipe, resolved, given its id.
fn plan_run(file: &RecipeFile, set: &SetFlags, tree: &Value, point: Point) -> Result<PlannedRun, RecipeError> {
    let mut value = tree.clone();
    for (key, v) in &point {
        let segments: Vec<&str> = key.split('.').collect();
        set_path(&mut value, &segments, v.clone()).map_err(|message| RecipeError {
            file: file.path.clone(),
            origin: Origin::Sweep { line: file.line_of(&["sweep".into(), key.clone()]) },
            message: format!("sweep over `{key}`: {message}"),
        })?;
    }
    let recipe: Recipe = Figment::from(Serialized::defaults(value)).extract().map_err(|e| {
        let culprit = point.iter().map(|(k, _)| k.as_str()).find(|k| e.path.join(".").starts_with(k));
        explain(file, set, e, culprit.or(point.first().map(|(k, _)| k.as_str())))
    })?;
    let written_root = recipe.data.root.clone();
    let mut settings = Settings::from_recipe(recipe).map_err(|e| located(file, set, &point, e))?;
    settings.resolve_paths(&file.folder()).map_err(|e| located(file, set, &point, e))?;
    Ok(PlannedRun { id: run_id(&file.name, &point, &settings, &written_root), swept: point, settings })
}

/// A settings error located in the recipe, or at the sweep point that produced it.
fn located(file: &RecipeFile, set: &SetFlags, point: &[(String, Value)], e: SettingError) -> RecipeError {
    let mut error = locate(file, set, &e.key, e.to_string());
    if let Some((k, v)) = point.iter().find(|(k, _)| e.key.starts_with(k.as_str()) || k.starts_with(&e.key)) {
        error.origin = Origin::Sweep { line: file.line_of(&["sweep".into(), k.clone()]) };
        error.message = format!("in the run where {k} = {}: {}", display_value(v), error.message);
    }
    error
}

/// Checks what the runs read from disk, once per distinct dataset and weights file: the
/// dataset folder layout (split and class folders, image/mask pairs) and that a weights
/// file is one (safetensors or a PyTorch state dict).
fn check_inputs(file: &RecipeFile, set: &SetFlags, runs: &[PlannedRun]) -> Result<(), PlanError> {
    // the classes of each distinct [data]
    let mut classes: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen_weights = BTreeSet::new();
    for run in runs {
        let key = run.data_key();
        if !classes.contains_key(&key) {
            let failed = |source| DatasetError { recipe: file.path.clone(), source };
            let found = match run.settings.data.dims {
                3 => radrun_data::volume_cases::discover_volumes(&run.settings.data).map_err(failed)?.classes,
                _ => radrun_data::discover(&run.settings.data).map_err(failed)?.classes().to_vec(),
            };
            classes.insert(key.clone(), found);
        }
        if run.settings.data.task == Task::Classification && classes[&key].len() == 2 {
            run.settings.eval.positive(&classes[&key]).map_err(|e| located(file, set, &run.swept, e))?;
        }
        if let ModelSettings::Transfer(t) = &run.settings.model
            && let Weights::File(path) = &t.weights
            && seen_weights.insert(path.clone())
        {
            radrun_settings::weights_file::check_file(path).map_err(|e| {
                let error = SettingError::new("model.weights", format!("{e}"));
                located(file, set, &run.swept, error)
            })?;
        }
    }
    Ok(())
}

/// The sections whose keys a sweep may set.
const SWEEPABLE: [&str; 6] = ["data", "augment", "model", "train", "split", "eval"];
/// The key `[sweep] seeds` sets.
const SEED_KEY: &str = "train.seed";
/// The key cross-validation sweeps.
const FOLD_KEY: &str = "split.fold";
/// `sweep.max_runs` when the recipe does not say.
pub const DEFAULT_MAX_RUNS: u64 = 10_000;

/// The sweep's points: the cartesian product of, in this order, each grid key (sorted,
/// the last one fastest), the zip rows, the random-search trials, the seeds, and the
/// folds of cross-validation.
/// The number of runs is checked against `sweep.max_runs` before anything is expanded
/// (a billion random trials or folds are refused, not drawn).
fn expand(file: &RecipeFile, sweep: &Sweep, split: &SplitRecipe) -> Result<Vec<Point>, RecipeError> {
    check_sweep(file, sweep)?;
    let folds = folds_to_run(file, sweep, split)?;
    let zip_len = sweep.zip.values().map(Vec::len).max().unwrap_or(0);
    // each axis: its name and how many assignments it steps through
    let mut sizes: Vec<(String, u64)> = sweep.grid.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    sizes.extend((zip_len > 0).then(|| ("[sweep.zip]".to_string(), zip_len as u64)));
    sizes.extend(sweep.random.as_ref().map(|r| ("[sweep.random] trials".to_string(), u64::from(r.trials))));
    sizes.extend((!sweep.seeds.is_empty()).then(|| ("seeds".to_string(), sweep.seeds.len() as u64)));
    sizes.extend(folds.as_ref().map(|f| ("folds".to_string(), f.count())));
    check_run_count(file, sweep, &sizes)?;
    let pair = |k: &str, v: Value| vec![(k.to_string(), v)];
    let mut axes: Vec<Vec<Point>> =
        sweep.grid.iter().map(|(k, values)| values.iter().map(|v| pair(k, v.clone())).collect()).collect();
    if zip_len > 0 {
        axes.push((0..zip_len).map(|i| sweep.zip.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect()).collect());
    }
    axes.extend(sweep.random.as_ref().map(random_points));
    if !sweep.seeds.is_empty() {
        axes.push(sweep.seeds.iter().map(|&s| pair(SEED_KEY, Value::from(s))).collect());
    }
    axes.extend(folds.map(|f| f.list().into_iter().map(|f| pair(FOLD_KEY, Value::from(f))).collect()));
    let mut points: Vec<Point> = vec![Vec::new()];
    for assignments in &axes {
        points =
            points.iter().flat_map(|p| assignments.iter().map(move |a| p.iter().chain(a).cloned().collect())).collect();
    }
    Ok(points)
}

/// The folds a cross-validated recipe runs, unless the sweep sets `split.fold` itself.
enum Folds {
    /// Folds 1 to k.
    All(u32),
    /// These folds (checked: each from 1 to k).
    Some(Vec<u32>),
}

impl Folds {
    fn count(&self) -> u64 {
        match self {
            Folds::All(k) => u64::from(*k),
            Folds::Some(list) => list.len() as u64,
        }
    }

    fn list(self) -> Vec<u32> {
        match self {
            Folds::All(k) => (1..=k).collect(),
            Folds::Some(list) => list,
        }
    }
}

/// The folds to run, checked against `split.folds`.
fn folds_to_run(file: &RecipeFile, sweep: &Sweep, split: &SplitRecipe) -> Result<Option<Folds>, RecipeError> {
    if split.folds == 0 || sweep.grid.contains_key(FOLD_KEY) || sweep.zip.contains_key(FOLD_KEY) {
        return Ok(None);
    }
    let list = match &split.fold {
        FoldChoice::All => return Ok(Some(Folds::All(split.folds))),
        FoldChoice::Some(list) => list.clone(),
    };
    let refuse = |message: String| RecipeError {
        file: file.path.clone(),
        origin: Origin::File { line: file.line_of(&["split".into(), "fold".into()]) },
        message,
    };
    if list.is_empty() {
        return Err(refuse("`split.fold` lists no folds; write \"all\", a fold number or a list of them".into()));
    }
    if let Some(bad) = list.iter().find(|&&f| f == 0 || f > split.folds) {
        return Err(refuse(format!(
            "`split.fold`: fold {bad} does not exist; folds count from 1 to {} (split.folds)",
            split.folds
        )));
    }
    Ok(Some(Folds::Some(list)))
}

/// Refuses a sweep of more runs than `sweep.max_runs`, from the size of each axis.
fn check_run_count(file: &RecipeFile, sweep: &Sweep, sizes: &[(String, u64)]) -> Result<(), RecipeError> {
    let count = sizes.iter().try_fold(1u64, |n, (_, size)| n.checked_mul(*size)).unwrap_or(u64::MAX);
    let max_runs = sweep.max_runs.unwrap_or(DEFAULT_MAX_RUNS);
    if count <= max_runs {
        return Ok(());
    }
    let sizes: Vec<String> = sizes.iter().map(|(k, size)| format!("{k}: {size}")).collect();
    Err(RecipeError {
        file: file.path.clone(),
        origin: Origin::File { line: file.line_of(&["sweep".into()]) },
        message: format!(
            "the sweep makes {count} runs ({}), more than `sweep.max_runs` = {max_runs}; sweep fewer values, \
             or raise `sweep.max_runs` if you mean it",
            sizes.join(" x ")
        ),
    })
}

/// The points of a random search: for each trial, a value for each key (in sorted key
/// order, so the order of the keys in the file does not matter), all drawn from one
/// ChaCha8 generator seeded with `random.seed`.
fn random_points(random: &RandomSearch) -> Vec<Point> {
    let mut rng = ChaCha8Rng::seed_from_u64(random.seed);
    (0..random.trials)
        .map(|_| {
            random
                .keys
                .iter()
                .map(|(key, distribution)| {
                    let value = match distribution {
                        Distribution::Uniform([a, b]) => Value::from(significant(rng.random_range(*a..=*b))),
                        Distribution::LogUniform([a, b]) => {
                            Value::from(significant(rng.random_range(a.ln()..=b.ln()).exp()))
                        }
                        Distribution::Int([a, b]) => Value::from(rng.random_range(*a..=*b)),
                        Distribution::Choice(values) => values[rng.random_range(0..values.len())].clone(),
                    };
                    (key.clone(), value)
                })
                .collect()
        })
        .collect()
}

/// `x` rounded to 4 significant digits.
fn significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.3e}").parse().expect("a formatted float parses")
}

/// Sweep keys must be dotted keys of a section, swept once, with values; zipped lists
/// must have one length.
fn check_sweep(file: &RecipeFile, sweep: &Sweep) -> Result<(), RecipeError> {
    let err = |key: &str, message: String| RecipeError {
        file: file.path.clone(),
        origin: Origin::Sweep { line: file.line_of(&["sweep".into(), key.to_string()]) },
        message,
    };
    let swept = |key: &str| sweep.grid.contains_key(key) || sweep.zip.contains_key(key);
    if !sweep.seeds.is_empty() && swept(SEED_KEY) {
        return Err(err(SEED_KEY, format!("`{SEED_KEY}` is swept and `[sweep] seeds` is set: keep one of the two")));
    }
    if swept("split.folds") {
        return Err(err(
            "split.folds",
            "`split.folds` cannot be swept: set `[split] folds = k`; each fold is then a run (choose them with \
             `split.fold`)"
                .into(),
        ));
    }
    if let Some(random) = &sweep.random {
        check_random(file, sweep, random)?;
    }
    for (key, values) in sweep.grid.iter().chain(&sweep.zip) {
        if values.is_empty() {
            return Err(err(key, format!("sweep over `{key}` lists no values")));
        }
        let section = key.split('.').next().unwrap_or_default();
        if !SWEEPABLE.contains(&section) || !key.contains('.') {
            return Err(err(
                key,
                format!(
                    "sweep key `{key}` must be a dotted key inside data, augment, model, train, split or eval, e.g. \
                     \"model.blocks\""
                ),
            ));
        }
        if sweep.grid.contains_key(key) && sweep.zip.contains_key(key) {
            return Err(err(key, format!("`{key}` is swept both in [sweep] and [sweep.zip]")));
        }
    }
    let zip_len = sweep.zip.values().map(Vec::len).max().unwrap_or(0);
    if let Some((key, values)) = sweep.zip.iter().find(|(_, v)| v.len() != zip_len) {
        return Err(err(
            key,
            format!(
                "the lists of [sweep.zip] advance together and must have the same length: `{key}` has {}, another has {zip_len}",
                values.len()
            ),
        ));
    }
    Ok(())
}

/// Random search: trials, keys inside a section and not swept otherwise, ranges in order.
fn check_random(file: &RecipeFile, sweep: &Sweep, random: &RandomSearch) -> Result<(), RecipeError> {
    let err = |key: &str, message: String| RecipeError {
        file: file.path.clone(),
        origin: Origin::Sweep { line: file.line_of(&["sweep".into(), "random".into(), key.to_string()]) },
        message: format!("[sweep.random] `{key}`: {message}"),
    };
    if random.trials == 0 || random.keys.is_empty() {
        return Err(err("trials", "needs `trials` of at least 1 and at least one key to draw".into()));
    }
    for (key, distribution) in &random.keys {
        let section = key.split('.').next().unwrap_or_default();
        if !SWEEPABLE.contains(&section) || !key.contains('.') {
            return Err(err(key, "must be a dotted key inside data, augment, model, train, split or eval".into()));
        }
        if sweep.grid.contains_key(key) || sweep.zip.contains_key(key) {
            return Err(err(key, "is also swept in [sweep]; draw it or list it, not both".into()));
        }
        let ordered = |a: f64, b: f64| a.is_finite() && b.is_finite() && a < b;
        let problem = match distribution {
            Distribution::Uniform([a, b]) if !ordered(*a, *b) => {
                Some(format!("uniform needs [low, high] with low < high, found [{a}, {b}]"))
            }
            Distribution::LogUniform([a, b]) if !(ordered(*a, *b) && *a > 0.0) => {
                Some(format!("log_uniform needs [low, high] with 0 < low < high, found [{a}, {b}]"))
            }
            Distribution::Int([a, b]) if a > b => {
                Some(format!("int needs [low, high] with low <= high, found [{a}, {b}]"))
            }
            Distribution::Choice(values) if values.is_empty() => Some("choice lists no values".into()),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(err(key, problem));
        }
    }
    Ok(())
}

/// Sets a dotted path in a value tree: tables get the key (created if missing), arrays
/// take an index.
fn set_path(node: &mut Value, path: &[&str], value: Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("non-empty path");
    match node {
        Value::Dict(_, dict) => {
            if rest.is_empty() {
                dict.insert((*head).to_string(), value);
                Ok(())
            } else {
                let child = dict.entry((*head).to_string()).or_insert_with(|| Value::from(Dict::new()));
                set_path(child, rest, value)
            }
        }
        Value::Array(_, items) => {
            let len = items.len();
            let index: usize = head.parse().map_err(|_| format!("`{head}` is not an index into a list of {len}"))?;
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is past the end of a list of {len} (indices start at 0)"))?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_path(item, rest, value)
            }
        }
        _ => Err(format!("cannot set `{head}` inside a value that is not a table")),
    }
}

/// A value as written in a run id or a table: numbers and words as is, lists joined by x.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128(), n.to_i128(), n.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(f)) => format!("{f}"),
            (None, None, None) => format!("{n:?}"),
        },
        Value::Array(_, items) => items.iter().map(display_value).collect::<Vec<_>>().join("x"),
        Value::Dict(_, dict) => {
            dict.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect::<Vec<_>>().join(",")
        }
        Value::Empty(..) => String::new(),
    }
}

/// Stable id: readable swept values plus the settings' hash (see [`settings_hash`]),
/// with the dataset root as written in the recipe (ids survive moving the project).
fn run_id(name: &str, point: &[(String, Value)], settings: &Settings, written_root: &Path) -> String {
    let mut id = name.to_string();
    for (key, value) in point {
        let short = key.split_once('.').map_or(key.as_str(), |(_, rest)| rest);
        id.push_str(&format!("-{short}={}", display_value(value)));
    }
    let id: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' }).collect();
    format!("{id}-{}", settings_hash(settings, written_root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: i64) -> Value {
        Value::from(n)
    }

    #[test]
    fn set_path_reaches_tables_and_list_items() {
        let mut root =
            Value::serialize(serde_json::json!({"train": {"phases": [{"epochs": 1}, {"epochs": 2}]}})).unwrap();
        set_path(&mut root, &["train", "phases", "1", "epochs"], v(9)).unwrap();
        set_path(&mut root, &["model", "blocks"], v(3)).unwrap();
        let back: serde_json::Value = root.deserialize().unwrap();
        assert_eq!(back["train"]["phases"][1]["epochs"], 9);
        assert_eq!(back["model"]["blocks"], 3);
        assert!(set_path(&mut root, &["train", "phases", "5", "epochs"], v(1)).unwrap_err().contains("past the end"));
    }

    #[test]
    fn values_display_for_ids() {
        assert_eq!(display_value(&Value::from(0.001)), "0.001");
        assert_eq!(display_value(&v(3)), "3");
        assert_eq!(display_value(&Value::from(vec![v(64), v(32)])), "64x32");
    }
}
