//! Every way a radrun command can fail, and its exit code (as cargo-nextest maps its
//! expected errors): 2 for what the user wrote (recipe, command line, dataset layout,
//! weights file), 3 for the machine (libtorch, the GPU, the disk, Slurm, starting a
//! process), 1 when the plan was sound but runs failed, 4 from `radrun status` while runs
//! are not done, 5 when `radrun reproduce` trained a run again and got other results, and
//! 128 + the signal's number when a signal stopped training. Messages are for people: no
//! Rust debug text, and each environment error says what to do. The display of every
//! variant is the whole line `radrun` prints (`error: ...`, except for `Unfinished`,
//! which is a state, not an error).

use std::path::PathBuf;

use radrun_data::paths::path_text;

use crate::recipe::RecipeError;
use crate::recipe::plan::{DatasetError, PlanError};
use crate::report::ReportError;
use crate::store::WriteError;

/// Exit code when a run failed.
pub const RUN_FAILED: u8 = 1;
/// Exit code when the recipe, command line or data are wrong.
pub const BAD_INPUT: u8 = 2;
/// Exit code when the environment is wrong.
pub const ENVIRONMENT: u8 = 3;
/// Exit code of `radrun status` while runs are not done yet.
pub const UNFINISHED: u8 = 4;
/// Exit code of `radrun reproduce` when the retrained run's metrics differ.
pub const NOT_REPRODUCED: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RadrunError {
    /// The recipe or a command-line value is wrong.
    #[error("error: {0}")]
    Recipe(#[from] RecipeError),
    /// A dataset folder does not have the expected layout (found while planning).
    #[error("error: {0}")]
    Dataset(#[from] DatasetError),
    /// A done run read other files than the dataset now holds.
    #[error(
        "error: the dataset changed since run {} was trained: {changes}; its results would be mixed with \
         new ones: rerun with --force to retrain every run on the files as they are now, or restore the files",
        path_text(run)
    )]
    DatasetChanged { run: PathBuf, changes: String },
    /// libtorch could not build, load or trace a network.
    #[error("error: libtorch could not {what}: {source:#}; `radrun doctor` shows which libtorch radrun runs on")]
    Libtorch {
        what: String,
        #[source]
        source: anyhow::Error,
    },
    /// The device asked for cannot be used.
    #[error("error: {0}; `radrun doctor` lists the devices libtorch sees")]
    Device(String),
    /// A file or folder cannot be written.
    #[error("error: {0}: {source}; free space on that disk, or choose a folder this user may write", source = .0.source)]
    Disk(WriteError),
    /// MLflow could not be sent what a run holds (`radrun track sync`).
    #[error("error: {0}")]
    Tracking(String),
    /// Slurm refused a job.
    #[error(
        "error: Slurm refused the job: {0}; check that this machine can submit (`sinfo`, `sbatch --test-only`) \
         and the recipe's [slurm] options"
    )]
    Slurm(String),
    /// A process radrun needs cannot be started (itself as a worker, a tool).
    #[error("error: cannot {what}: {source}; check that the radrun binary is still where it was started from")]
    Process {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// libtorch or CUDA is not installed or not working (`radrun doctor`).
    #[error("error: {0}")]
    Installation(String),
    /// A file radrun must read cannot be read.
    #[error("error: cannot read {}: {source}; check that it is there and that this user may read it", path_text(path))]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Pretrained weights cannot be fetched or stored.
    #[error("error: {0:#}")]
    Weights(anyhow::Error),
    /// The plan was sound, but some runs failed; each says why in its status.json (a run
    /// that could not even be claimed said why on the terminal).
    #[error(
        "error: {failed} of {total} run(s) failed; the error of each is in its status.json and in {summary}",
        summary = path_text(summary)
    )]
    RunsFailed { failed: usize, total: usize, summary: PathBuf },
    /// A signal stopped training; the run in training wrote its checkpoint.
    #[error(
        "error: stopped by {}: the run in training wrote its checkpoint; run the same command again to go on \
         (the runs so far are in {summary})",
        name,
        summary = path_text(summary)
    )]
    Interrupted { signal: i32, name: &'static str, summary: PathBuf },
    /// `radrun status`: runs are still pending, running, interrupted or stale. A state,
    /// not an error: no `error:` before it.
    #[error("{unfinished} of {total} run(s) not done yet")]
    Unfinished { unfinished: usize, total: usize },
    /// `radrun reproduce`: the run trained again gave other metrics.
    #[error("error: {differing} metric(s) differ by more than {tolerance} (see above); the run did not reproduce")]
    NotReproduced { differing: usize, tolerance: f64 },
    /// `--index` or `--run` names no run of the plan.
    #[error("error: {0}")]
    Selection(String),
    /// `radrun report`: the folder is not a recipe's runs folder, or its plan unreadable.
    #[error("error: {0}")]
    Report(#[from] ReportError),
    /// `radrun dicom inspect`: some files cannot be decoded (each was named with why).
    #[error("error: {unreadable} of {total} file(s) cannot be decoded")]
    FilesUnreadable { unreadable: usize, total: usize },
    /// `radrun dicom series`: some series are not volumes, or some files did not decode
    /// (each was named with why, and series.csv lists the refused series).
    #[error("error: {refused} series and {unreadable} file(s) could not be converted (see above and series.csv)")]
    SeriesRefused { refused: usize, unreadable: usize },
}

impl RadrunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RadrunError::Recipe(_)
            | RadrunError::Dataset(_)
            | RadrunError::DatasetChanged { .. }
            | RadrunError::Selection(_) => BAD_INPUT,
            RadrunError::Interrupted { signal, .. } => 128 + *signal as u8,
            RadrunError::Unfinished { .. } => UNFINISHED,
            RadrunError::NotReproduced { .. } => NOT_REPRODUCED,
            RadrunError::Libtorch { .. }
            | RadrunError::Device(_)
            | RadrunError::Disk(_)
            | RadrunError::Slurm(_)
            | RadrunError::Tracking(_)
            | RadrunError::Process { .. }
            | RadrunError::Installation(_)
            | RadrunError::Unreadable { .. }
            | RadrunError::Weights(_)
            | RadrunError::Report(ReportError::Write(_)) => ENVIRONMENT,
            RadrunError::Report(_) => BAD_INPUT,
            RadrunError::RunsFailed { .. }
            | RadrunError::FilesUnreadable { .. }
            | RadrunError::SeriesRefused { .. } => RUN_FAILED,
        }
    }
}

impl From<WriteError> for RadrunError {
    fn from(error: WriteError) -> Self {
        RadrunError::Disk(error)
    }
}

impl From<PlanError> for RadrunError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Recipe(e) => RadrunError::Recipe(e),
            PlanError::Dataset(e) => RadrunError::Dataset(e),
        }
    }
}
