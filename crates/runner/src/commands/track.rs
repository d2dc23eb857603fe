//! `radrun track sync runs/<recipe>`: sends to MLflow what its runs hold and MLflow
//! lacks (what could not be sent while they trained: the server down, slow or
//! unreachable), as the folders' `mlflow.json` record it.

use std::path::Path;

use radrun_data::paths::path_text;

use crate::error::RadrunError;
use crate::run::mlflow::{SENT_FILE, sync};

pub fn sync_folder(folder: &Path) -> Result<(), RadrunError> {
    let mut runs: Vec<_> = std::fs::read_dir(folder)
        .map_err(|source| RadrunError::Unreadable { path: folder.to_path_buf(), source })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(SENT_FILE).is_file())
        .collect();
    if folder.join(SENT_FILE).is_file() {
        runs.push(folder.to_path_buf());
    }
    runs.sort();
    if runs.is_empty() {
        return Err(RadrunError::Tracking(format!(
            "{}: no run here is tracked by MLflow (no {SENT_FILE}); give runs/<recipe> of a recipe with [track] mlflow",
            path_text(folder)
        )));
    }
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|run| match sync(run) {
            Ok(()) => {
                println!("{}: sent", path_text(run));
                None
            }
            Err(e) => Some(format!("{}: {e}", path_text(run))),
        })
        .collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(RadrunError::Tracking(format!(
            "not sent; run `radrun track sync` again once the server answers:\n{}",
            failed.join("\n")
        ))),
    }
}
