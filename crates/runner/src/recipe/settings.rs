//! The settings one run runs on: every section resolved (no optional values, every
//! default written out), and the one function that resolves what depends on more than
//! one section (the model kind's training defaults, the task check, paths against the
//! recipe's folder). Also the rule that gives a run its stable hash.

use std::path::{Path, PathBuf};

use radrun_data::{AugmentSettings, DataSettings, SettingError, SplitSettings, Task};
use radrun_settings::controls::Metric;
use radrun_settings::{LossName, ModelSettings, TrainSettings, Weights};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{FoldChoice, Recipe};
use radrun_metrics::evaluate::{Calibrate, EvalSettings, ValMode};

/// A run's settings from its resolved recipe (its folder's `recipe.toml`), as it ran: no
/// defaults layered, no environment variables, and without looking for its training
/// data (it may be elsewhere now).
pub fn read_resolved(path: &Path) -> Result<Settings, super::RecipeError> {
    use figment::providers::{Format, Toml};
    let file = super::RecipeFile::read(path)?;
    let set = super::SetFlags::default();
    let recipe: Recipe =
        figment::Figment::from(Toml::file_exact(path)).extract().map_err(|e| super::explain(&file, &set, e, None))?;
    Settings::from_recipe(recipe).map_err(|e| super::locate(&file, &set, &e.key, e.to_string()))
}

/// A run's resolved settings; written as its `recipe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub data: DataSettings,
    pub augment: AugmentSettings,
    pub model: ModelSettings,
    pub train: TrainSettings,
    pub split: SplitSettings,
    pub eval: EvalSettings,
}

impl Settings {
    /// Resolves a recipe without looking at the disk: the model kind's defaults filled
    /// in and every value checked, each section alone and across sections.
    pub fn from_recipe(recipe: Recipe) -> Result<Settings, SettingError> {
        let Recipe { data, augment, model, train, split, eval, sweep: _, run: _, slurm: _, report: _, track: _ } =
            recipe;
        data.validate()?;
        augment.validate(data.dims)?;
        eval.validate()?;
        // the plan gives each run one fold; a recipe read as it is may still say "all"
        let fold = match (&split.fold, split.folds) {
            (FoldChoice::All, 0) => 0,
            (FoldChoice::Some(folds), _) if folds.len() == 1 => folds[0],
            (_, folds) => {
                return Err(SettingError::new(
                    "split.fold",
                    format!("must be one fold number between 1 and {folds} for a single run"),
                ));
            }
        };
        let split = SplitSettings { folds: split.folds, fold };
        split.validate()?;
        // the default kind reads what the data are: a recipe of volumes without a
        // [model] section classifies them with the 3D CNN
        let model = if data.dims == 3 && model == ModelSettings::default() {
            ModelSettings::Cnn3d(Default::default())
        } else {
            model
        };
        if data.dims == 3 {
            model.validate_volume()?;
        } else {
            let (h, w) = data.height_width();
            model.validate(h as i64, w as i64)?;
        }
        // a classifier's outputs serve one class per image or a set of labels
        let fits = model.task() == data.task || (model.task() == Task::Classification && data.task == Task::Multilabel);
        if !fits {
            let kinds = if model.is_volume() {
                "use \"unet3d\" for segmentation and \"cnn3d\" for classification"
            } else {
                "use \"unet\" for segmentation and \"cnn\" or \"transfer\" for classification and multilabel"
            };
            return Err(SettingError::new(
                "model.kind",
                format!("is \"{}\", which does not fit `data.task = \"{}\"`: {kinds}", model.kind(), data.task.name()),
            ));
        }
        let train = train.resolve(&model)?;
        check_volume_only(data.dims, &model, &train, &eval)?;
        if let Some(stopping) = train.early_stopping
            && matches!(stopping.metric, Metric::ValDice | Metric::ValIou)
            && data.task != Task::Segmentation
        {
            return Err(SettingError::new(
                "train.early_stopping.metric",
                format!(
                    "is \"{}\", which only segmentation has; use \"val_loss\" or \"val_accuracy\"",
                    stopping.metric.name()
                ),
            ));
        }
        if eval.calibrate != Calibrate::None && data.task == Task::Segmentation {
            return Err(SettingError::new(
                "eval.calibrate",
                "applies to classification and multilabel (probabilities per image); remove it from a segmentation \
                 recipe",
            ));
        }
        if data.task == Task::Multilabel && train.class_weights != radrun_settings::ClassWeights::None {
            return Err(SettingError::new(
                "train.class_weights",
                "applies to one class per image; a multi-label task has no class weights (remove the key)",
            ));
        }
        Ok(Settings { data, augment, model, train, split, eval })
    }

    /// Makes the paths absolute (relative ones start at the recipe's `folder`) and checks
    /// that the dataset folder and weight files exist.
    pub fn resolve_paths(&mut self, folder: &Path) -> Result<(), SettingError> {
        let root = folder.join(&self.data.root);
        if !root.is_dir() {
            // a file there (an archive not yet unpacked, a single image) is not "missing"
            let what = if root.exists() {
                "names a file, not the folder holding the split folders"
            } else {
                "names a dataset folder that does not exist"
            };
            return Err(SettingError::new(
                "data.root",
                format!(
                    "{what}: {}; a relative `data.root` starts at the recipe's folder ({})",
                    root.display(),
                    folder.canonicalize().unwrap_or_else(|_| folder.to_path_buf()).display()
                ),
            ));
        }
        self.data.root = root.canonicalize().unwrap_or(root);
        if let ModelSettings::Transfer(transfer) = &mut self.model {
            match &transfer.weights {
                Weights::None => {}
                Weights::Imagenet => {
                    if !crate::store::imagenet::imagenet_file(transfer.backbone).is_file() {
                        return Err(SettingError::new(
                            "model.weights",
                            crate::store::imagenet::missing_imagenet_message(transfer.backbone),
                        ));
                    }
                }
                Weights::File(written) => {
                    let path = folder.join(written);
                    if !path.is_file() {
                        return Err(SettingError::new(
                            "model.weights",
                            format!(
                                "weights file {} does not exist; `model.weights` takes \"imagenet\", \"none\" or a \
                                 .safetensors/.pth file (a relative path starts at the recipe's folder)",
                                path.display()
                            ),
                        ));
                    }
                    transfer.weights = Weights::File(path.canonicalize().unwrap_or(path));
                }
            }
        }
        Ok(())
    }
}

/// Bump when a default value changes meaning: every run id changes with it, so that no
/// run trained under the old default is taken as done under the new one.
/// 2: validation splits became grouped (by DICOM PatientID by default) and are drawn
/// by another algorithm, so a run of schema 1 saw other validation images.
/// 3: augmentation turns about the tutorial's Keras pivot and fills as SciPy does
/// (constant, reflect, wrap), and RMSprop with momentum puts epsilon inside the root, as
/// TF 2.1 did.
/// 4: libtorch's generator is seeded again before every training batch (so that a run
/// resumed from a checkpoint draws the same dropout masks), which changes the masks of
/// every run with dropout; phases gained a schedule and a warm-up.
pub const RUN_ID_SCHEMA: u32 = 4;

/// The hash that makes a run's id: the settings that differ from the defaults of its
/// model kind (as `dotted.key = value` lines, sorted), with `data.root` as the recipe
/// wrote it and without `data.cache`. A key added later with a default leaves every
/// existing id unchanged.
pub fn settings_hash(settings: &Settings, written_root: &Path) -> String {
    let mut base = Recipe { model: settings.model.kind_defaults(), ..Recipe::default() };
    base.data.task = base.model.task();
    base.data.dims = if base.model.is_volume() { 3 } else { 2 };
    let defaults = Settings::from_recipe(base).expect("the defaults of every model kind are valid");
    let mut hashed = settings.clone();
    hashed.data.root = PathBuf::from(written_root);
    // where images are kept between epochs does not change a run
    hashed.data.cache = radrun_data::CacheMode::default();
    let mut differences = Vec::new();
    let (run, base) = (to_json(&hashed), to_json(&defaults));
    diff("", &run, Some(&base), &mut differences);
    differences.sort();
    let text = format!("schema {RUN_ID_SCHEMA}\n{}", differences.join("\n"));
    Sha256::digest(text.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The keys only volume runs read are left out of 2D recipes, and the losses volume
/// networks cannot take out of volume recipes.
fn check_volume_only(
    dims: u32,
    model: &ModelSettings,
    train: &TrainSettings,
    eval: &EvalSettings,
) -> Result<(), SettingError> {
    let volume_only = "applies to volumes (`data.dims = 3`) only";
    if eval.val_mode == ValMode::Volumes && matches!(model, ModelSettings::Cnn3d(_)) {
        return Err(SettingError::new(
            "eval.val_mode",
            "is \"volumes\", which a segmentation's validation reads; cnn3d validates on whole volumes already: \
             remove it",
        ));
    }
    if dims == 3 && matches!(train.loss, LossName::BinaryCrossEntropy | LossName::BceDice) {
        return Err(SettingError::new(
            "train.loss",
            "is a binary cross-entropy alone; radrun trains volumes with nnU-Net's loss or its parts: use \
             \"dice_ce\" (the default: cross-entropy, binary for one structure, plus Dice), \"cross_entropy\" \
             (binary for one structure) or \"dice\"",
        ));
    }
    if dims != 3 && train.iterations_per_epoch != 0 {
        return Err(SettingError::new(
            "train.iterations_per_epoch",
            format!("{volume_only}: a 2D epoch sees every training image once; remove it"),
        ));
    }
    match eval.volume_keys_set().first() {
        Some(key) if dims != 3 => {
            Err(SettingError::new(format!("eval.{key}"), format!("{volume_only}; remove it from this 2D recipe")))
        }
        _ => Ok(()),
    }
}

fn to_json(settings: &Settings) -> serde_json::Value {
    serde_json::to_value(settings).expect("settings serialize")
}

/// Collects `key = value` for every leaf of `value` that `base` lacks or holds another
/// value at. Tables are descended; lists count as one value.
fn diff(prefix: &str, value: &serde_json::Value, base: Option<&serde_json::Value>, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                diff(&path, child, base.and_then(|b| b.get(key)), out);
            }
        }
        leaf if base != Some(leaf) => out.push(format!("{prefix} = {leaf}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(recipe: Recipe) -> String {
        let root = recipe.data.root.clone();
        settings_hash(&Settings::from_recipe(recipe).unwrap(), &root)
    }

    #[test]
    fn only_settings_that_differ_from_the_defaults_are_hashed() {
        let default = hash(Recipe::default());
        // writing a default out explicitly is the same run
        let mut explicit = Recipe::default();
        explicit.train.epochs = Some(15);
        explicit.train.batch_size = Some(10);
        assert_eq!(hash(explicit), default);
        let mut other = Recipe::default();
        other.train.epochs = Some(3);
        assert_ne!(hash(other), default);
    }

    #[test]
    fn run_hashes_are_pinned() {
        // Pinned: if this fails, a change renamed existing runs, and every result of an
        // earlier version would be trained again. Give a new key a default (it is then
        // left out of the hash), or bump RUN_ID_SCHEMA on purpose and update these.
        assert_eq!(hash(Recipe::default()), "5f0286bf");
        let mut sgd = Recipe::default();
        sgd.train.optimizer = Some(radrun_settings::OptimizerName::Sgd);
        sgd.model = ModelSettings::Unet(Default::default());
        sgd.data.task = Task::Segmentation;
        assert_eq!(hash(sgd), "2262d49b");
    }

    #[test]
    fn a_new_key_with_its_default_does_not_change_the_hash() {
        // A key added in a later version appears in the run's settings and in the
        // defaults alike: diffing leaves it out.
        let mut run = serde_json::json!({"train": {"epochs": 3, "new_key": 0.5}});
        let base = serde_json::json!({"train": {"epochs": 15, "new_key": 0.5}});
        let mut out = Vec::new();
        diff("", &run, Some(&base), &mut out);
        assert_eq!(out, ["train.epochs = 3"]);
        run["train"]["new_key"] = serde_json::json!(0.7);
        out.clear();
        diff("", &run, Some(&base), &mut out);
        assert_eq!(out, ["train.epochs = 3", "train.new_key = 0.7"]);
    }
}
