//! Every way a radrun command can fail, and its exit code (as cargo-nextest maps its
//! expected errors): 2 for what the user wrote (recipe, command line, dataset layout,
//! weights file), 3 for the machine (libtorch, GPU, a folder that cannot be written), 1
//! when the plan was sound but runs failed. Messages are for people: no Rust debug text.

use std::path::PathBuf;

use crate::recipe::RecipeError;

/// Exit code when a run failed.
pub const RUN_FAILED: u8 = 1;
/// Exit code when the recipe, command line or data are wrong.
pub const BAD_INPUT: u8 = 2;
/// Exit code when the environment is wrong.
pub const ENVIRONMENT: u8 = 3;
/// Exit code of `radrun status` while runs are not done yet.
pub const UNFINISHED: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum RadrunError {
    /// The recipe or a command-line value is wrong.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A dataset folder does not have the expected layout (found while planning).
    #[error("{recipe}: {source}", recipe = recipe.display())]
    Dataset {
        recipe: PathBuf,
        #[source]
        source: radrun_data::Error,
    },
    /// A done run read other files than the dataset now holds.
    #[error(
        "the dataset changed since run {} was trained: {changes}; its results would be mixed with \
         new ones: rerun with --force to retrain every run on the files as they are now, or restore the files",
        run.display()
    )]
    DatasetChanged { run: PathBuf, changes: String },
    /// The machine: libtorch, the GPU, files that cannot be read or written.
    #[error("{0:#}")]
    Environment(#[from] anyhow::Error),
    /// The plan was sound, but some runs failed; each says why in its status.json (a run
    /// that could not even be claimed said why on the terminal).
    #[error(
        "{failed} of {total} run(s) failed; the error of each is in its status.json and in {summary}",
        summary = summary.display()
    )]
    RunsFailed { failed: usize, total: usize, summary: PathBuf },
    /// A signal stopped training; the run in training wrote its checkpoint.
    #[error(
        "stopped by {}: the run in training wrote its checkpoint; run the same command again to go on \
         (the runs so far are in {summary})",
        crate::signals::name(*signal),
        summary = summary.display()
    )]
    Interrupted { signal: i32, summary: PathBuf },
    /// `radrun status`: runs are still pending, running, interrupted or stale.
    #[error("{unfinished} of {total} run(s) not done yet")]
    Unfinished { unfinished: usize, total: usize },
    /// `--index` or `--run` names no run of the plan.
    #[error("{0}")]
    Selection(String),
    /// `radrun report`: the folder is not a recipe's runs folder, or its plan unreadable.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// `radrun dicom inspect`: some files cannot be decoded (each was named with why).
    #[error("{unreadable} of {total} file(s) cannot be decoded")]
    FilesUnreadable { unreadable: usize, total: usize },
}

impl RadrunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RadrunError::Recipe(_)
            | RadrunError::Dataset { .. }
            | RadrunError::DatasetChanged { .. }
            | RadrunError::Selection(_) => BAD_INPUT,
            RadrunError::Interrupted { signal, .. } => 128 + *signal as u8,
            RadrunError::Unfinished { .. } => UNFINISHED,
            RadrunError::Environment(_) | RadrunError::Report(crate::report::ReportError::Write(_)) => ENVIRONMENT,
            RadrunError::Report(_) => BAD_INPUT,
            RadrunError::RunsFailed { .. } | RadrunError::FilesUnreadable { .. } => RUN_FAILED,
        }
    }
}

impl From<crate::run_dir::WriteError> for RadrunError {
    fn from(error: crate::run_dir::WriteError) -> Self {
        RadrunError::Environment(error.into())
    }
}
