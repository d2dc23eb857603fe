//! `status.json`: a run's state and what a process or machine picking it up needs to
//! know (where, when and by what it was trained, its headline results, provenance).

use std::collections::BTreeMap;
use std::path::PathBuf;

use radrun_metrics::stats::Interval;
use serde::{Deserialize, Serialize};

use super::provenance::Provenance;

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
    Failed,
    /// Stopped by a signal after writing its checkpoint; the next start goes on from it.
    Interrupted,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
        }
    }
}

/// `status.json`: what a process or machine picking up the run needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub run_id: String,
    /// The recipe file the run came from.
    #[serde(serialize_with = "radrun_data::paths::serialize_path")]
    pub recipe_file: PathBuf,
    pub started: String,
    pub finished: Option<String>,
    pub seconds: Option<f64>,
    pub error: Option<String>,
    /// What else a reader should know: where an interrupted run stopped, what a resumed
    /// run continued from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub device: Option<String>,
    pub radrun_version: String,
    pub libtorch_version: Option<String>,
    pub host: String,
    pub pid: u32,
    /// The Slurm task that trained it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmTask>,
    /// Epoch whose weights were evaluated.
    pub evaluated_epoch: Option<u32>,
    /// Validation metrics of that epoch.
    pub validation: BTreeMap<String, f64>,
    /// Headline test metrics (all of them are in evaluation.json).
    pub test: BTreeMap<String, f64>,
    /// Bootstrap confidence intervals of the headline test metrics (`eval.confidence`;
    /// every metric's is in intervals.csv).
    #[serde(default)]
    pub test_intervals: BTreeMap<String, Interval>,
    pub provenance: Provenance,
}

/// The Slurm task a run was trained in, as its environment says (recorded in
/// status.json: which job, node and GPUs trained the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmTask {
    pub job_id: String,
    pub array_job_id: Option<String>,
    pub array_task_id: Option<String>,
    pub node: Option<String>,
    /// How often Slurm requeued the job before this attempt.
    pub restart_count: Option<u32>,
    /// The GPUs Slurm gave the task.
    pub cuda_visible_devices: Option<String>,
}

impl SlurmTask {
    /// The task this process runs in, if it runs under Slurm.
    pub fn current() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(Self {
            job_id: var("SLURM_JOB_ID")?,
            array_job_id: var("SLURM_ARRAY_JOB_ID"),
            array_task_id: var("SLURM_ARRAY_TASK_ID"),
            node: var("SLURMD_NODENAME"),
            restart_count: var("SLURM_RESTART_COUNT").and_then(|v| v.parse().ok()),
            cuda_visible_devices: var("CUDA_VISIBLE_DEVICES"),
        })
    }
}
