//! Recipes: TOML files read with figment in layers (built-in defaults < recipe file <
//! `RADRUN_<SECTION>__<KEY>` environment variables < `--set key=value`), checked strictly
//! into typed settings. Every error names the file (or variable, or flag), the key, the
//! line where the TOML parser knows it, and what is allowed.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use radrun_data::{AugmentSettings, DataSettings};

use radrun_metrics::evaluate::EvalSettings;
use radrun_settings::{ModelSettings, TrainRecipe};
use serde::{Deserialize, Serialize};

/// A whole recipe as written (the train section's kind-dependent keys still optional);
/// [`crate::recipe::settings::Settings`] is its resolved form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub data: DataSettings,
    #[serde(default)]
    pub augment: AugmentSettings,
    #[serde(default)]
    pub model: ModelSettings,
    #[serde(default)]
    pub train: TrainRecipe,
    #[serde(default)]
    pub split: SplitRecipe,
    #[serde(default)]
    pub eval: EvalSettings,
    /// The runs this recipe makes: a grid, lists that advance together, random trials and
    /// repeated seeds (none: one run). Expanded by [`crate::recipe::plan`]; absent from a
    /// run's resolved recipe.
    #[serde(default, skip_serializing_if = "Sweep::is_empty")]
    pub sweep: Sweep,
    /// How runs are shared out; not part of any run's settings or id.
    #[serde(default)]
    pub run: RunSection,
    /// Extra `#SBATCH` options for `radrun submit --slurm`; not part of any run's settings.
    #[serde(default)]
    pub slurm: SlurmSection,
    /// What the report shows; not part of any run's settings or id.
    #[serde(default)]
    pub report: ReportSection,
    /// Where each run's progress is also recorded; not part of any run's settings or id.
    #[serde(default)]
    pub track: TrackSection,
}

/// The `[track]` section: each run's epochs and results also written for the tracking
/// tools a group already uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrackSection {
    /// TensorBoard event files in each run's `tensorboard/` folder: every epoch's losses,
    /// metrics and learning rate, then the test metrics, the confusion matrix and the
    /// first gallery images (`tensorboard --logdir runs/<recipe>`).
    pub tensorboard: bool,
    /// MLflow: the tracking server's URI (`"http://127.0.0.1:5000"`), or `"env"`: the
    /// `MLFLOW_TRACKING_URI` environment variable's; empty: no MLflow.
    pub mlflow: String,
    /// The MLflow experiment the runs go to; empty: the recipe's name.
    pub experiment: String,
}

impl TrackSection {
    /// The MLflow server's URI, when the recipe names one.
    pub fn mlflow_uri(&self) -> Result<Option<String>, String> {
        let uri = match self.mlflow.as_str() {
            "" => return Ok(None),
            "env" => std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
                "is \"env\" but MLFLOW_TRACKING_URI is not set; set it, or write the server's URI, e.g. \
                 \"http://127.0.0.1:5000\""
                    .to_string()
            })?,
            uri => uri.to_string(),
        };
        if uri.starts_with("http://") || uri.starts_with("https://") {
            Ok(Some(uri))
        } else {
            Err(format!(
                "is \"{uri}\", not the http(s) URI of a tracking server (e.g. \"http://127.0.0.1:5000\", what \
                 `mlflow server` prints); radrun talks to MLflow through a server only"
            ))
        }
    }
}

/// The `[report]` section: the test-image gallery of each classification run (written
/// into the run folder at the end of its evaluation) and its Grad-CAM maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Test images in each run's gallery: the misclassified first, then correct ones
    /// spread over the test set (0: no gallery, no Grad-CAM).
    pub gallery: usize,
    /// The stage Grad-CAM looks at: a layer of the run's model_summary.txt whose output
    /// is a feature map, or "auto" (the last one).
    pub gradcam_layer: String,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self { gallery: 24, gradcam_layer: "auto".into() }
    }
}

/// The `[run]` section: how processes share the runs (see [`crate::store::claim`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// A claim whose heartbeat is older than this ("10m", "90s", "1h") may be taken over.
    pub stale_after: String,
    /// A run also checkpoints within an epoch once this long has passed since its last
    /// checkpoint ("0s": after every batch).
    pub checkpoint_every: String,
    /// Runs trained at a time, each by its own worker process (`--jobs` wins).
    pub jobs: u16,
}

impl Default for RunSection {
    fn default() -> Self {
        Self { stale_after: "10m".into(), checkpoint_every: "10m".into(), jobs: 1 }
    }
}

/// A duration as a recipe writes it ("10m", "90s", "1h").
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed: jiff::SignedDuration =
        text.parse().map_err(|_| format!("\"{text}\" is not a duration; write e.g. \"10m\", \"90s\" or \"1h\""))?;
    std::time::Duration::try_from(parsed).map_err(|_| format!("is {text}, which is negative"))
}

impl RunSection {
    /// `stale_after` as a duration, at least four heartbeats long.
    pub fn stale_after(&self) -> Result<std::time::Duration, String> {
        let least = crate::store::claim::HEARTBEAT * 4;
        match duration(&self.stale_after)? {
            d if d >= least => Ok(d),
            _ => Err(format!(
                "is {}, shorter than {} s: a live run refreshes its claim every {} s and would look stale",
                self.stale_after,
                least.as_secs(),
                crate::store::claim::HEARTBEAT.as_secs()
            )),
        }
    }

    /// `checkpoint_every` as a duration.
    pub fn checkpoint_every(&self) -> Result<std::time::Duration, String> {
        duration(&self.checkpoint_every)
    }
}

/// The `[slurm]` section: `sbatch = ["--qos=normal", "--constraint=a100"]` adds these
/// options as `#SBATCH` lines to the job array `radrun submit --slurm` writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSection {
    pub sbatch: Vec<String>,
}

/// The `[split]` section as written: `folds = k` for k-fold cross-validation, and which
/// folds to run (`fold = "all"`, one number, or a list; folds count from 1). The plan
/// makes one run per fold; [`radrun_data::SplitSettings`] is one run's resolved form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SplitRecipe {
    pub folds: u32,
    pub fold: FoldChoice,
}

/// Which folds to run.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum FoldChoice {
    /// Every fold, one run each.
    #[default]
    All,
    /// These folds (1-based).
    Some(Vec<u32>),
}

impl Serialize for FoldChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FoldChoice::All => s.serialize_str("all"),
            FoldChoice::Some(folds) if folds.len() == 1 => s.serialize_u32(folds[0]),
            FoldChoice::Some(folds) => folds.serialize(s),
        }
    }
}

impl schemars::JsonSchema for FoldChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FoldChoice".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "const": "all" },
                { "type": "integer", "minimum": 1 },
                { "type": "array", "items": { "type": "integer", "minimum": 1 }, "minItems": 1 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for FoldChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, SeqAccess, Visitor};
        struct FoldVisitor;
        impl<'de> Visitor<'de> for FoldVisitor {
            type Value = FoldChoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\", a fold number (from 1) or a list of fold numbers")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FoldChoice, E> {
                match v {
                    "all" => Ok(FoldChoice::All),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FoldChoice, E> {
                u32::try_from(v)
                    .map(|v| FoldChoice::Some(vec![v]))
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FoldChoice, E> {
                u32::try_from(v)
                    .map(|v| FoldChoice::Some(vec![v]))
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FoldChoice, A::Error> {
                let mut folds = Vec::new();
                while let Some(fold) = seq.next_element::<u32>()? {
                    folds.push(fold);
                }
                Ok(FoldChoice::Some(folds))
            }
        }
        d.deserialize_any(FoldVisitor)
    }
}

/// The `[sweep]` section: `"dotted.key" = [values]` pairs form a grid (cartesian
/// product); the pairs of `[sweep.zip]` advance together, and that list is crossed with
/// the grid; `seeds` repeats every point with each `train.seed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sweep {
    /// Keys whose value lists advance together (all the same length).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<serde_json::Value>>")]
    pub zip: Map<String, Vec<Value>>,
    /// Repeats: every run once per seed (sets `train.seed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// The most runs a plan may have; a larger sweep is an error before it is expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u64>,
    /// Random search, crossed with the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomSearch>,
    /// `"dotted.key" = [values]`: the grid.
    #[serde(flatten)]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<serde_json::Value>>")]
    pub grid: Map<String, Vec<Value>>,
}

impl Sweep {
    pub fn is_empty(&self) -> bool {
        self.grid.is_empty()
            && self.zip.is_empty()
            && self.seeds.is_empty()
            && self.max_runs.is_none()
            && self.random.is_none()
    }
}

/// `[sweep.random]`: `trials` points drawn at random (seeded by `seed`) from a
/// distribution per key, e.g. `"train.learning_rate" = { log_uniform = [1e-5, 1e-2] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RandomSearch {
    pub trials: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(flatten)]
    pub keys: Map<String, Distribution>,
}

/// Where a random-search value is drawn from. Numbers drawn from `uniform` and
/// `log_uniform` are rounded to 4 significant digits (readable in run ids and tables;
/// draws that round to the same value make one run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Uniform in [a, b].
    Uniform([f64; 2]),
    /// Uniform in the logarithm between a and b (both positive): as likely between
    /// 1e-5 and 1e-4 as between 1e-3 and 1e-2.
    LogUniform([f64; 2]),
    /// A whole number from a to b, both included.
    Int([i64; 2]),
    /// One of the listed values.
    Choice(#[schemars(with = "Vec<serde_json::Value>")] Vec<Value>),
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// The recipe file, at a line when known.
    File { line: Option<usize> },
    /// A `RADRUN_...` environment variable.
    Environment(String),
    /// A `--set` flag, as the user gave it (`train.epochs=abc`), or its key alone.
    SetFlag(String),
    /// A `[sweep]` value.
    Sweep { line: Option<usize> },
}

/// A recipe that cannot be used, with everything needed to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeError {
    pub file: PathBuf,
    pub origin: Origin,
    pub message: String,
}

impl std::error::Error for RecipeError {}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = radrun_data::paths::path_text(&self.file);
        match &self.origin {
            Origin::File { line: Some(line) } | Origin::Sweep { line: Some(line) } => {
                write!(f, "{file}:{line}: {}", self.message)
            }
            Origin::File { line: None } | Origin::Sweep { line: None } => write!(f, "{file}: {}", self.message),
            Origin::Environment(var) => write!(f, "environment variable {var} (recipe {file}): {}", self.message),
            Origin::SetFlag(flag) => write!(f, "--set {flag} (recipe {file}): {}", self.message),
        }
    }
}

/// A recipe file as read from disk, kept for locating keys.
#[derive(Debug)]
pub struct RecipeFile {
    pub path: PathBuf,
    /// The file stem: names the folder under `runs/`.
    pub name: String,
    text: String,
    doc: toml_edit::Document<String>,
}

/// Line (1-based) of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

impl RecipeFile {
    /// The recipe as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn read(path: &Path) -> Result<Self, RecipeError> {
        let err =
            |message: String, line| RecipeError { file: path.to_path_buf(), origin: Origin::File { line }, message };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                format!(
                    "cannot read the recipe ({e}); give the path of a .toml recipe, e.g. recipes/chest_6class.toml"
                ),
                None,
            )
        })?;
        let doc = toml_edit::Document::parse(text.clone()).map_err(|e| {
            let line = e.span().map(|s| line_at(&text, s.start));
            err(format!("not valid TOML: {}", e.message().trim()), line)
        })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "recipe".into());
        Ok(Self { path: path.to_path_buf(), name, text, doc })
    }

    /// Folder of the recipe file: relative dataset paths start here.
    pub fn folder(&self) -> PathBuf {
        let parent = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent }
    }

    /// Line of the deepest key of `path` present in the file.
    pub fn line_of(&self, path: &[String]) -> Option<usize> {
        key_span(self.doc.as_item(), path).map(|span| line_at(&self.text, span.start))
    }
}

/// Span of the last key of `path` that exists, descending tables, inline tables and
/// arrays of tables.
fn key_span(root: &toml_edit::Item, path: &[String]) -> Option<Range<usize>> {
    enum Node<'a> {
        Item(&'a toml_edit::Item),
        Table(&'a toml_edit::Table),
        Value(&'a toml_edit::Value),
    }
    let mut node = Node::Item(root);
    let mut best = None;
    for segment in path {
        let table: Option<&dyn toml_edit::TableLike> = match &node {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(*t as &dyn toml_edit::TableLike),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        };
        if let Some(table) = table {
            let Some((key, item)) = table.get_key_value(segment) else { break };
            best = key.span().or(best);
            node = Node::Item(item);
            continue;
        }
        let Ok(index) = segment.parse::<usize>() else { break };
        node = match node {
            Node::Item(i) => match (i.as_array_of_tables(), i.as_array()) {
                (Some(a), _) => match a.get(index) {
                    Some(t) => Node::Table(t),
                    None => break,
                },
                (_, Some(a)) => match a.get(index) {
                    Some(v) => Node::Value(v),
                    None => break,
                },
                _ => break,
            },
            Node::Value(v) => match v.as_array().and_then(|a| a.get(index)) {
                Some(v) => Node::Value(v),
                None => break,
            },
            Node::Table(_) => break,
        };
    }
    best
}

/// `--set key=value` flags as a figment provider; values are read as TOML (a bare word
/// that is not valid TOML is taken as a string).
#[derive(Debug, Clone, Default)]
pub struct SetFlags(pub Vec<(String, Value)>);

impl SetFlags {
    pub fn parse(flags: &[String]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for flag in flags {
            let (key, raw) = flag
                .split_once('=')
                .ok_or_else(|| format!("--set {flag}: expected key=value, e.g. --set train.epochs=5"))?;
            let key = key.trim();
            let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
            let value = match parsed {
                Ok(mut t) => Value::serialize(t.remove("v").expect("parsed key")).map_err(|e| e.to_string())?,
                Err(_) => Value::from(raw.trim().to_string()),
            };
            pairs.push((key.to_string(), value));
        }
        Ok(Self(pairs))
    }
}

impl Provider for SetFlags {
    fn metadata(&self) -> Metadata {
        Metadata::named("--set")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut figment = Figment::new();
        for (key, value) in &self.0 {
            figment = figment.merge(Serialized::default(key, value.clone()));
        }
        figment.data()
    }
}

/// The built-in defaults layer. `[model]` holds only `kind`: each kind fills its own
/// defaults, and another kind's keys must not leak in.
fn defaults() -> Serialized<Value> {
    let mut value = Value::serialize(Recipe::default()).expect("defaults serialize");
    if let Value::Dict(_, dict) = &mut value {
        dict.insert("model".into(), Value::from(Dict::from([("kind".to_string(), Value::from("cnn"))])));
    }
    Serialized::defaults(value)
}

/// The `RADRUN_<SECTION>__<KEY>` environment variables: `RADRUN_TRAIN__EPOCHS=5` sets
/// `train.epochs`.
fn environment() -> Env {
    Env::prefixed(ENV_PREFIX).filter(|k| k.as_str().contains("__")).split("__")
}

const ENV_PREFIX: &str = "RADRUN_";

/// The recipe's layers, merged.
pub fn layered(file: &RecipeFile, set: &SetFlags) -> Figment {
    Figment::new().merge(defaults()).merge(Toml::file_exact(&file.path)).merge(environment()).merge(set.clone())
}

/// A value set above the recipe file, by a `--set` flag or a `RADRUN_` variable: who set
/// it, and its key (a table set at once counts as one value per key).
struct Written {
    origin: Origin,
    path: Vec<String>,
    value: Value,
}

/// The values the `--set` flags and `RADRUN_` variables set, the one that wins first
/// (a later flag over an earlier one, a flag over a variable). Errors are located from
/// these rather than from figment's metadata, which the flags' values do not carry (they
/// pass through a figment of their own) and which names a table, not the variable.
fn written_above(set: &SetFlags) -> Vec<Written> {
    let mut written = Vec::new();
    for (key, value) in set.0.iter().rev() {
        one_per_key(&Origin::SetFlag(flag_text(key, value)), dotted(key), value, &mut written);
    }
    let env = environment();
    for (key, raw) in env.iter() {
        let name = format!("{ENV_PREFIX}{}", key.as_str().replace('.', "__").to_uppercase());
        let value: Value = raw.parse().expect("figment reads any text as a value");
        one_per_key(&Origin::Environment(name), dotted(key.as_str()), &value, &mut written);
    }
    written
}

/// `train.epochs` as its path.
fn dotted(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// Adds `value` at `path` to `written`, a table as one entry per key in it.
fn one_per_key(origin: &Origin, path: Vec<String>, value: &Value, written: &mut Vec<Written>) {
    match value {
        Value::Dict(_, dict) => {
            for (key, inner) in dict {
                let mut inner_path = path.clone();
                inner_path.push(key.clone());
                one_per_key(origin, inner_path, inner, written);
            }
        }
        _ => written.push(Written { origin: origin.clone(), path, value: value.clone() }),
    }
}

/// A `--set` flag as `key=value`, the value as TOML writes it (a text bare, as typed).
fn flag_text(key: &str, value: &Value) -> String {
    let value = match value {
        Value::String(_, text) => text.clone(),
        other => toml::Value::try_from(other).map_or_else(|_| format!("{other:?}"), |v| v.to_string()),
    };
    format!("{key}={value}")
}

/// Where the value at `path` came from: the flag or variable that set it or a table
/// holding it, else one that set a key inside it (the error is about the table), else
/// the recipe file, at the line of the deepest key of `path` it has.
fn origin_of(file: &RecipeFile, written: &[Written], path: &[String]) -> Origin {
    let holding = written.iter().find(|w| path.starts_with(&w.path));
    let inside = || written.iter().find(|w| !path.is_empty() && w.path.starts_with(path));
    match holding.or_else(inside) {
        Some(w) => w.origin.clone(),
        None => Origin::File { line: file.line_of(path) },
    }
}

/// Turns a figment extraction error into a [`RecipeError`].
pub fn explain(file: &RecipeFile, set: &SetFlags, error: figment::Error, in_sweep: Option<&str>) -> RecipeError {
    use figment::error::Kind;
    let error = error.into_iter().next().expect("an error has at least one part");
    let written = written_above(set);
    let mut path = error.path.clone();
    let lost = match &error.kind {
        Kind::UnknownVariant(found, _) => key_with_value(file, &written, &path, found),
        _ => None,
    };
    if let Some(key) = lost {
        path.push(key);
    } else if let Some(sweep_key) = in_sweep
        && !matches!(error.kind, Kind::UnknownField(..) | Kind::MissingField(_))
        && sweep_key.starts_with(&format!("{}.", path.join(".")))
    {
        // serde named the table around the swept key: name the key
        path = dotted(sweep_key);
    }
    let (message, hint) = describe_kind(&error.kind, &mut path);
    let key = path.join(".");
    let origin = match in_sweep {
        Some(sweep_key) => Origin::Sweep { line: file.line_of(&["sweep".to_string(), sweep_key.to_string()]) },
        None => origin_of(file, &written, &path),
    };
    let key_text = if key.is_empty() { "the recipe".to_string() } else { format!("`{key}`") };
    let mut message = format!("{key_text}: {message}");
    if let Some(sweep_key) = in_sweep {
        message = format!("sweep over `{sweep_key}`: {message}");
    }
    if let Some(hint) = hint {
        message.push_str(&hint);
    }
    RecipeError { file: file.path.clone(), origin, message }
}

/// The closest allowed name, when close enough to be a likely typo.
pub fn did_you_mean<'a>(found: &str, allowed: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    allowed
        .into_iter()
        .map(|a| (strsim::jaro_winkler(found, a), a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
}

fn describe_kind(kind: &figment::error::Kind, path: &mut Vec<String>) -> (String, Option<String>) {
    use figment::error::Kind;
    let listed = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    match kind {
        Kind::UnknownField(field, expected) => {
            if path.last() == Some(field) {
                path.pop();
            }
            let parent = path.join(".");
            path.push(field.clone());
            let full = |n: &str| if parent.is_empty() { n.to_string() } else { format!("{parent}.{n}") };
            let hint = did_you_mean(field, expected.iter().copied()).map(|s| format!("; did you mean `{}`?", full(s)));
            ("unknown key".into(), Some(format!("{} (allowed here: {})", hint.unwrap_or_default(), listed(expected))))
        }
        Kind::UnknownVariant(found, expected) => {
            let hint = did_you_mean(found, expected.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            let allowed: Vec<String> = expected.iter().map(|e| format!("\"{e}\"")).collect();
            (format!("\"{found}\" is not allowed; expected one of {}", allowed.join(", ")), Some(hint))
        }
        Kind::InvalidType(actual, expected) => (format!("expected {}, found {actual}", plain(expected)), None),
        Kind::InvalidValue(actual, expected) => (format!("expected {}, found {actual}", plain(expected)), None),
        Kind::InvalidLength(n, expected) => (format!("expected {expected}, found {n} values"), None),
        Kind::MissingField(field) => {
            path.push(field.to_string());
            ("is required but missing".into(), None)
        }
        Kind::Message(m) => (m.clone(), None),
        other => (other.to_string(), None),
    }
}

/// serde's type names in words a recipe author knows.
fn plain(expected: &str) -> String {
    match expected {
        // the range, so that a value past it (epochs = 4294967296) is told why
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u64" | "usize" => "a whole number of at least 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list [ ... ]".into(),
        other => other.to_string(),
    }
}

/// When serde could not say which key of a table held a bad value (internally tagged
/// tables such as `[model]` lose it), the key under `path` whose value is `found`: set by
/// a flag or variable, else in the file.
fn key_with_value(file: &RecipeFile, written: &[Written], path: &[String], found: &str) -> Option<String> {
    let mut in_table = written.iter().filter(|w| w.path.len() == path.len() + 1 && w.path.starts_with(path));
    if let Some(w) = in_table.find(|w| w.value.as_str() == Some(found)) {
        return w.path.last().cloned();
    }
    let mut item = file.doc.as_item();
    for segment in path {
        item = item.as_table_like()?.get(segment)?;
    }
    item.as_table_like()?.iter().find(|(_, v)| v.as_str() == Some(found)).map(|(k, _)| k.to_string())
}

/// A settings error (from `validate`/`resolve`) located in the recipe, or at the flag or
/// variable that set the key.
pub fn locate(file: &RecipeFile, set: &SetFlags, key: &str, message: String) -> RecipeError {
    let origin = origin_of(file, &written_above(set), &dotted(key));
    RecipeError { file: file.path.clone(), origin, message }
}
