//! `radrun reproduce RUN`: trains a run again from its own folder (its resolved
//! `recipe.toml`) into a scratch folder, and shows every validation and test metric of
//! the two side by side with the difference, and whether the dataset files are still
//! the same. On the CPU a run reproduces exactly (tolerance 0); on a GPU, cuDNN's
//! nondeterministic kernels allow small differences (default tolerance 0.01).

use std::collections::BTreeMap;
use std::path::PathBuf;

use radrun_runner::cli::ReproduceArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::recipe::SetFlags;
use radrun_runner::run::Selection;

use crate::run::Runner;
use radrun_runner::store::{RunDir, State, Status, WriteError};

/// Tolerance when either run used a GPU.
const GPU_TOLERANCE: f64 = 0.01;

pub fn reproduce(args: &ReproduceArgs) -> Result<(), RadrunError> {
    let original_dir = RunDir::new(args.run.clone());
    let recipe = args.run.join("recipe.toml");
    let original = original_dir.status().filter(|s| s.state == State::Done).ok_or_else(|| {
        usage_error(
            &args.run.join("status.json"),
            "is missing or not of a finished run; give the folder of a done run".into(),
        )
    })?;
    if !recipe.is_file() {
        return Err(usage_error(
            &recipe,
            "is missing; a run folder holds the resolved recipe it was trained from".into(),
        ));
    }
    let plan = radrun_runner::recipe::plan::plan(&recipe, &SetFlags::default())?;
    let scratch = match &args.into {
        Some(dir) => ScratchFolder::Kept(dir.clone()),
        None => ScratchFolder::Temporary(
            tempfile::Builder::new()
                .prefix("radrun-reproduce-")
                .tempdir()
                .map_err(|source| WriteError { path: std::env::temp_dir(), source })?,
        ),
    };
    let log = radrun_runner::run::log::init_logging();
    let mut reporter = radrun_runner::run::reporter::for_flags(args.quiet, false);
    let mut runner = Runner {
        runs_root: scratch.path(),
        force: true,
        selection: Selection::All,
        reporter: reporter.as_mut(),
        log,
        mlflow: None,
    };
    runner.run_plan(&plan)?;
    let run = plan.runs.first().expect("a resolved recipe has one run");
    let again = RunDir::new(runner.recipe_folder(&plan).join(&run.id)).status().expect("the run just finished");
    let on_gpu = |s: &Status| s.device.as_deref().is_some_and(|d| !d.to_lowercase().starts_with("cpu"));
    let tolerance = args.tolerance.unwrap_or(if on_gpu(&original) || on_gpu(&again) { GPU_TOLERANCE } else { 0.0 });
    let differing = report(&original, &again, tolerance);
    if let ScratchFolder::Kept(dir) = &scratch {
        println!("The reproduction is in {}", dir.display());
    }
    if differing > 0 {
        return Err(RadrunError::NotReproduced { differing, tolerance });
    }
    Ok(())
}

/// Where the reproduction is trained.
enum ScratchFolder {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl ScratchFolder {
    fn path(&self) -> PathBuf {
        match self {
            ScratchFolder::Temporary(dir) => dir.path().to_path_buf(),
            ScratchFolder::Kept(dir) => dir.clone(),
        }
    }
}

/// Prints both runs' metrics side by side; returns how many differ by more than
/// `tolerance`.
fn report(original: &Status, again: &Status, tolerance: f64) -> usize {
    let metrics = |s: &Status| -> BTreeMap<String, f64> {
        let validation = s.validation.iter().map(|(k, v)| (k.clone(), *v));
        validation.chain(s.test.iter().map(|(k, v)| (format!("test_{k}"), *v))).collect()
    };
    let (a, b) = (metrics(original), metrics(again));
    println!("Run {} reproduced (tolerance {tolerance}):", original.run_id);
    println!("  {:<28} {:>14} {:>14} {:>12}", "metric", "original", "reproduced", "difference");
    let mut differing = 0;
    for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        let (x, y) = (a.get(key), b.get(key));
        let difference = match (x, y) {
            (Some(x), Some(y)) => y - x,
            _ => f64::INFINITY,
        };
        let flag = if difference.abs() > tolerance {
            differing += 1;
            "  <- differs"
        } else {
            ""
        };
        let show = |v: Option<&f64>| v.map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
        println!("  {key:<28} {:>14} {:>14} {difference:>+12.2e}{flag}", show(x), show(y));
    }
    let fingerprint = |s: &Status| s.provenance.dataset.as_ref().map(|d| d.sha256.clone());
    match (fingerprint(original), fingerprint(again)) {
        (Some(x), Some(y)) if x == y => println!("  dataset: the same files (fingerprint {})", &x[..16]),
        (Some(x), Some(y)) => {
            println!("  dataset: CHANGED since the original run (fingerprint {} then, {} now)", &x[..16], &y[..16]);
        }
        _ => println!("  dataset: the original run recorded no fingerprint"),
    }
    differing
}
