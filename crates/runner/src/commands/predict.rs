//! `radrun predict RUN INPUT...`: a trained classification (or multi-label) run applied
//! to new files, with exactly its own preprocessing, read from its resolved recipe.toml.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use radrun_data::{FileKind, Series, Task};
use radrun_models::Network;
use radrun_train::Keep;
use radrun_train::predict::Predictor;

use super::usage_error;
use crate::cli::PredictArgs;
use crate::error::RadrunError;
use crate::recipe::{Recipe, RecipeFile, SetFlags, explain, locate};
use crate::run_dir::{RunDir, State, WeightsFile, write_csv};
use crate::settings::Settings;

pub fn predict(args: &PredictArgs) -> Result<(), RadrunError> {
    let dir = RunDir::new(args.run.clone());
    if dir.status().is_none_or(|s| s.state != State::Done) {
        return Err(usage_error(
            &args.run.join("status.json"),
            "is missing or not of a finished run; give the folder of a done run (runs/<recipe>/<run id>)".into(),
        ));
    }
    let settings = run_settings(&args.run.join("recipe.toml"))?;
    let data = &settings.data;
    if data.task == Task::Segmentation || data.series != Series::Files {
        return Err(usage_error(
            &args.run.join("recipe.toml"),
            "is a segmentation or series run; `radrun predict` applies classification and multi-label runs".into(),
        ));
    }
    let classes = trained_classes(&args.run.join("data_summary.json"))?;
    let files = input_files(&args.inputs)?;
    let (dataset, errors) = radrun_data::dataset::for_prediction(&files, data, classes);
    let device =
        radrun_train::device::resolve(settings.train.device).map_err(|e| RadrunError::Environment(e.into()))?;
    let channels = data.input_channels();
    let input = [channels as i64, dataset.height as i64, dataset.width as i64];
    let mut network = Network::build(&settings.model, input, dataset.classes.len() as i64, device)
        .map_err(|e| RadrunError::Environment(e.into()))?;
    let weights = dir.weights_path(match settings.train.keep {
        Keep::BestValidationLoss => WeightsFile::Best,
        Keep::Last => WeightsFile::Last,
    });
    network.load(&weights).map_err(|e| RadrunError::Environment(e.into()))?;
    let predictor = Predictor {
        network: &network,
        dataset: &dataset,
        batch_size: args.batch.unwrap_or(settings.train.batch_size as usize),
        channels,
        device,
    };
    let mut probabilities = predictor.class_probabilities(&dataset.test).into_iter();
    let multilabel = dataset.task == Task::Multilabel;
    let header: Vec<String> = ["file", if multilabel { "predicted_labels" } else { "predicted_class" }]
        .iter()
        .map(|s| s.to_string())
        .chain(dataset.classes.iter().map(|c| format!("p_{c}")))
        .chain(["error".to_string()])
        .collect();
    let mut rows = Vec::new();
    for (file, error) in files.iter().zip(&errors) {
        let mut row = vec![file.display().to_string()];
        match error {
            Some(e) => {
                row.extend(std::iter::repeat_n(String::new(), dataset.classes.len() + 1));
                row.push(e.to_string());
            }
            None => {
                let p = probabilities.next().expect("one row of probabilities per decoded file");
                let predicted = if multilabel {
                    let present = dataset.classes.iter().zip(&p).filter(|(_, v)| **v >= 0.5);
                    present.map(|(c, _)| c.as_str()).collect::<Vec<_>>().join("|")
                } else {
                    dataset.classes[radrun_train::metrics::argmax(&p)].clone()
                };
                row.push(predicted);
                row.extend(p.iter().map(|v| format!("{v}")));
                row.push(String::new());
            }
        }
        rows.push(row);
    }
    write_csv(&args.out, &header, &rows)?;
    let failed = errors.iter().filter(|e| e.is_some()).count();
    eprintln!(
        "{} file(s) predicted with {} ({} weights) -> {}",
        files.len() - failed,
        args.run.display(),
        weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        args.out.display()
    );
    if failed > 0 {
        for (file, error) in files.iter().zip(&errors) {
            if let Some(e) = error {
                eprintln!("  {}: {e}", file.display());
            }
        }
        return Err(RadrunError::FilesUnreadable { unreadable: failed, total: files.len() });
    }
    Ok(())
}

/// A run's settings from its resolved recipe, as it ran: no defaults layered, no
/// environment variables, and without looking for its training data (it may be
/// elsewhere now).
fn run_settings(path: &Path) -> Result<Settings, RadrunError> {
    let file = RecipeFile::read(path)?;
    let set = SetFlags::default();
    let recipe: Recipe = Figment::from(Toml::file_exact(path)).extract().map_err(|e| explain(&file, &set, e, None))?;
    Settings::from_recipe(recipe).map_err(|e| locate(&file, &set, &e.key, e.to_string()).into())
}

/// The class names the run was trained with, from its data_summary.json.
fn trained_classes(path: &Path) -> Result<Vec<String>, RadrunError> {
    let text =
        std::fs::read(path).map_err(|e| usage_error(path, format!("cannot be read ({e}); is this a run folder?")))?;
    let summary: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| usage_error(path, format!("is not valid JSON: {e}")))?;
    summary["classes"]
        .as_array()
        .and_then(|a| a.iter().map(|c| c.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| usage_error(path, "lists no classes".into()))
}

/// The files to predict: each file given, and every image under each folder given
/// (PNG, JPEG, DICOM with or without extension), sorted, hidden entries left out.
fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, RadrunError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            collect(input, &mut files)?;
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(usage_error(input, "does not exist; give image files or folders of them".into()));
        }
    }
    Ok(files)
}

fn collect(folder: &Path, files: &mut Vec<PathBuf>) -> Result<(), RadrunError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| usage_error(folder, format!("cannot be read: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files)?;
        } else if FileKind::of(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}
