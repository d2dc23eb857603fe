//! From a recipe to a plan: the layered recipe checked, its sweep expanded into runs,
//! every run's settings resolved (every default written out) and checked before any work
//! starts, and a stable id given to each run.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use sha2::{Digest, Sha256};

use crate::recipe::{Origin, Recipe, RecipeError, RecipeFile, SetFlags, Sweep, explain, layered, locate};

/// One run of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// `<recipe name>[-<key>=<value>...]-<8 hex of the settings' hash>`.
    pub id: String,
    /// The swept keys and this run's values, in sweep order.
    pub swept: Vec<(String, Value)>,
    /// Fully resolved settings (data.root absolute).
    pub recipe: Recipe,
}

/// Every run of a recipe.
#[derive(Debug, Clone)]
pub struct Plan {
    pub recipe_path: PathBuf,
    pub recipe_name: String,
    /// Swept keys, in the order of the id and summary columns.
    pub swept_keys: Vec<String>,
    pub runs: Vec<PlannedRun>,
}

/// Reads, checks and expands a recipe.
pub fn plan(path: &Path, set: &SetFlags) -> Result<Plan, RecipeError> {
    let file = RecipeFile::read(path)?;
    let figment = layered(&file, set);
    let base: Recipe = figment.extract().map_err(|e| explain(&file, e, None))?;
    resolve(&file, set, base.clone(), None)?;
    let mut data: Value = figment.extract().map_err(|e| explain(&file, e, None))?;
    if let Value::Dict(_, dict) = &mut data {
        dict.remove("sweep");
    }
    let points = expand(&file, &base.sweep)?;
    let swept_keys: Vec<String> =
        points.first().map(|p| p.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut runs = Vec::with_capacity(points.len());
    for point in points {
        let mut value = data.clone();
        for (key, v) in &point {
            let segments: Vec<&str> = key.split('.').collect();
            set_path(&mut value, &segments, v.clone()).map_err(|message| RecipeError {
                file: file.path.clone(),
                origin: Origin::Sweep { line: file.line_of(&["sweep".into(), key.clone()]) },
                message: format!("sweep over `{key}`: {message}"),
            })?;
        }
        let recipe: Recipe = Figment::from(Serialized::defaults(value)).extract().map_err(|e| {
            let culprit = point
                .iter()
                .map(|(k, _)| k.as_str())
                .find(|k| e.path.join(".").starts_with(k))
                .unwrap_or(point[0].0.as_str());
            explain(&file, e, Some(culprit))
        })?;
        let written_root = recipe.data.root.clone();
        let recipe = resolve(&file, set, recipe, Some(&point))?;
        runs.push(PlannedRun { id: run_id(&file.name, &point, &recipe, &written_root), swept: point, recipe });
    }
    Ok(Plan { recipe_path: file.path.clone(), recipe_name: file.name.clone(), swept_keys, runs })
}

/// Resolves defaults that depend on other settings and checks every value. Errors name
/// the key's line, or the sweep point that produced it.
fn resolve(
    file: &RecipeFile,
    set: &SetFlags,
    mut recipe: Recipe,
    point: Option<&[(String, Value)]>,
) -> Result<Recipe, RecipeError> {
    let fail = |key: &str, message: String| {
        let mut error = locate(file, set, key, message);
        if let Some(point) = point
            && let Some((k, v)) = point.iter().find(|(k, _)| key.starts_with(k.as_str()) || k.starts_with(key))
        {
            error.origin = Origin::Sweep { line: file.line_of(&["sweep".into(), k.clone()]) };
            error.message = format!("in the run where {k} = {}: {}", display_value(v), error.message);
        }
        error
    };
    if recipe.data.root.is_relative() {
        recipe.data.root = file.folder().join(&recipe.data.root);
    }
    if !recipe.data.root.is_dir() {
        return Err(fail(
            "data.root",
            format!(
                "dataset folder {} does not exist; `data.root` is resolved against the recipe's folder ({})",
                recipe.data.root.display(),
                file.folder().canonicalize().unwrap_or_else(|_| file.folder()).display()
            ),
        ));
    }
    recipe.data.root = recipe.data.root.canonicalize().unwrap_or(recipe.data.root);
    recipe.data.validate().map_err(|e| setting_error(&fail, e))?;
    recipe.augment.validate().map_err(|e| setting_error(&fail, e))?;
    let (h, w) = recipe.data.height_width();
    recipe.model.validate(h as i64, w as i64).map_err(|e| setting_error(&fail, e))?;
    if let (radrun_models::ModelSettings::Unet(_), radrun_data::Task::Classification)
    | (
        radrun_models::ModelSettings::Cnn(_) | radrun_models::ModelSettings::Transfer(_),
        radrun_data::Task::Segmentation,
    ) = (&recipe.model, recipe.data.task)
    {
        return Err(fail(
            "model.kind",
            format!(
                "`model.kind = \"{}\"` does not fit `data.task = \"{:?}\"`: use \"unet\" for segmentation and \
                 \"cnn\" or \"transfer\" for classification",
                recipe.model.kind(),
                recipe.data.task
            )
            .to_lowercase(),
        ));
    }
    recipe.train.resolve(&recipe.model).map_err(|e| setting_error(&fail, e))?;
    if let radrun_models::ModelSettings::Transfer(transfer) = &mut recipe.model {
        match transfer.weights.as_str() {
            "none" => {}
            "imagenet" => {
                if !crate::weights::imagenet_file(transfer.backbone).is_file() {
                    return Err(fail("model.weights", crate::weights::missing_imagenet_message(transfer.backbone)));
                }
            }
            written => {
                let path = file.folder().join(written);
                if !path.is_file() {
                    return Err(fail(
                        "model.weights",
                        format!(
                            "weights file {} does not exist; `model.weights` takes \"imagenet\", \"none\" or a \
                             .safetensors/.pth file (a relative path starts at the recipe's folder)",
                            path.display()
                        ),
                    ));
                }
                transfer.weights = path.canonicalize().unwrap_or(path).display().to_string();
            }
        }
    }
    recipe.sweep = Sweep::default();
    Ok(recipe)
}

/// Maps a crate's `InvalidSetting { key, message }` (rendered "`key` message") to a
/// located recipe error.
fn setting_error<E: std::fmt::Display + KeyOf>(fail: &dyn Fn(&str, String) -> RecipeError, e: E) -> RecipeError {
    match e.key() {
        Some(key) => fail(&key, e.to_string()),
        None => fail("", e.to_string()),
    }
}

/// The recipe key an error is about, when it is about one.
pub trait KeyOf {
    fn key(&self) -> Option<String>;
}

impl KeyOf for radrun_data::Error {
    fn key(&self) -> Option<String> {
        match self {
            radrun_data::Error::InvalidSetting { key, .. } => Some(key.clone()),
            _ => None,
        }
    }
}

impl KeyOf for radrun_models::Error {
    fn key(&self) -> Option<String> {
        match self {
            radrun_models::Error::InvalidSetting { key, .. } => Some(key.clone()),
            radrun_models::Error::Weights { .. } => Some("model.weights".into()),
        }
    }
}

impl KeyOf for radrun_train::Error {
    fn key(&self) -> Option<String> {
        match self {
            radrun_train::Error::InvalidSetting { key, .. } => Some(key.clone()),
            radrun_train::Error::Device(_) => Some("train.device".into()),
            radrun_train::Error::NonFiniteLoss { .. } => None,
        }
    }
}

/// The sweep's points: the grid's cartesian product (keys in sorted order, last key
/// fastest) crossed with the zip rows.
fn expand(file: &RecipeFile, sweep: &Sweep) -> Result<Vec<Vec<(String, Value)>>, RecipeError> {
    let err = |key: &str, message: String| RecipeError {
        file: file.path.clone(),
        origin: Origin::Sweep { line: file.line_of(&["sweep".into(), key.to_string()]) },
        message,
    };
    for (key, values) in sweep.grid.iter().chain(&sweep.zip) {
        if values.is_empty() {
            return Err(err(key, format!("sweep over `{key}` lists no values")));
        }
        let section = key.split('.').next().unwrap_or_default();
        if !crate::recipe::SECTIONS[..4].contains(&section) || !key.contains('.') {
            return Err(err(
                key,
                format!(
                    "sweep key `{key}` must be a dotted key inside data, augment, model or train, e.g. \"model.blocks\""
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
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (key, values) in &sweep.grid {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    if zip_len > 0 {
        points = points
            .into_iter()
            .flat_map(|p| {
                (0..zip_len).map(move |i| {
                    let mut q = p.clone();
                    q.extend(sweep.zip.iter().map(|(k, v)| (k.clone(), v[i].clone())));
                    q
                })
            })
            .collect();
    }
    Ok(points)
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
        Value::Num(_, n) => match (n.to_i128(), n.to_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f}"),
            (None, None) => format!("{n:?}"),
        },
        Value::Array(_, items) => items.iter().map(display_value).collect::<Vec<_>>().join("x"),
        Value::Dict(_, dict) => {
            dict.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect::<Vec<_>>().join(",")
        }
        Value::Empty(..) => String::new(),
    }
}

/// Stable id: readable swept values plus a hash of the resolved settings, with the
/// dataset root as written in the recipe (ids survive moving the project folder).
fn run_id(name: &str, point: &[(String, Value)], recipe: &Recipe, written_root: &Path) -> String {
    let mut hashed = recipe.clone();
    hashed.data.root = written_root.to_path_buf();
    let json = serde_json::to_string(&hashed).expect("settings serialize");
    let digest = Sha256::digest(json.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut id = name.to_string();
    for (key, value) in point {
        let short = key.split_once('.').map_or(key.as_str(), |(_, rest)| rest);
        id.push_str(&format!("-{short}={}", display_value(value)));
    }
    let id: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' }).collect();
    format!("{id}-{hash}")
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
