//! Slurm job arrays: one array task per run not done yet, each running
//! `radrun run RECIPE --index $SLURM_ARRAY_TASK_ID` with the same `--set` flags and runs
//! folder. The tasks claim their runs like any other radrun process (see
//! [`crate::store::claim`]), so a task, a resubmission and a local `radrun RECIPE` never train
//! one run twice. Tasks are requeued when preempted (`--requeue`) and get SIGTERM two
//! minutes before their time limit (`--signal=B:TERM@120`): they checkpoint, and a
//! requeued task goes on from there; a task stopped by its time limit is not requeued,
//! and the next `radrun submit` sends its run again. Job ids go to
//! `runs/<recipe>/slurm/jobs.json`; states come back from `squeue` (Slurm's accounting
//! is not needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::store::{WriteError, write_atomic};

/// What `radrun submit` asks of Slurm for each run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub partition: Option<String>,
    /// GPUs per task (`--gres=gpu:N`); Slurm sets CUDA_VISIBLE_DEVICES per task.
    pub gpus_per_run: u32,
    pub cpus_per_run: Option<u32>,
    /// Memory per task as sbatch writes it ("16G").
    pub mem: Option<String>,
    /// Time limit per task as sbatch writes it ("2:00:00").
    pub time: Option<String>,
    /// At most this many tasks at once (`%K`).
    pub max_parallel: Option<u32>,
    pub account: Option<String>,
}

/// Everything the job script says.
pub struct Job<'a> {
    pub recipe_name: &'a str,
    /// Absolute paths: the task may start in another folder, on another machine.
    pub radrun: &'a Path,
    pub recipe: &'a Path,
    pub runs_root: &'a Path,
    pub set: &'a [String],
    /// Plan indices of the runs to train.
    pub indices: &'a [usize],
    pub resources: &'a Resources,
    /// Extra options from the recipe's `[slurm] sbatch`.
    pub extra: &'a [String],
    /// Folder for the tasks' output files.
    pub log_folder: &'a Path,
}

/// `0-3,5,7-9%K`: the indices as ranges, with the parallel limit.
pub fn array_spec(indices: &[usize], max_parallel: Option<u32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        while i + 1 < indices.len() && indices[i + 1] == indices[i] + 1 {
            i += 1;
        }
        parts.push(if indices[i] == start { start.to_string() } else { format!("{start}-{}", indices[i]) });
        i += 1;
    }
    let limit = max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    format!("{}{limit}", parts.join(","))
}

/// A word for bash, single-quoted where needed.
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A value of an `#SBATCH` directive: double-quoted when it holds spaces or quotes.
fn directive_value(value: &str) -> String {
    if value.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
    }
}

/// The sbatch script of a job array.
pub fn script(job: &Job) -> String {
    let r = job.resources;
    // sbatch reads `%` in file names as a pattern (%% is a percent sign) and splits
    // directives on spaces unless quoted
    let output = format!("{}/%A_%a.out", job.log_folder.display().to_string().replace('%', "%%"));
    let mut options = vec![
        format!("--job-name={}", directive_value(&format!("radrun-{}", job.recipe_name))),
        format!("--array={}", array_spec(job.indices, r.max_parallel)),
        format!("--output={}", directive_value(&output)),
        "--requeue".to_string(),
        // SIGTERM to the task (radrun itself, by exec) 120 s before its time limit:
        // it checkpoints, and a requeued or resubmitted task goes on from there
        "--signal=B:TERM@120".to_string(),
        "--ntasks=1".to_string(),
    ];
    options.extend(r.partition.as_ref().map(|p| format!("--partition={p}")));
    options.extend(r.account.as_ref().map(|a| format!("--account={a}")));
    options.extend(r.cpus_per_run.map(|c| format!("--cpus-per-task={c}")));
    options.extend((r.gpus_per_run > 0).then(|| format!("--gres=gpu:{}", r.gpus_per_run)));
    options.extend(r.mem.as_ref().map(|m| format!("--mem={m}")));
    options.extend(r.time.as_ref().map(|t| format!("--time={t}")));
    options.extend(job.extra.iter().cloned());
    let mut command = vec![
        quote(&job.radrun.display().to_string()),
        "run".into(),
        quote(&job.recipe.display().to_string()),
        "--index".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
        "--runs".into(),
        quote(&job.runs_root.display().to_string()),
    ];
    for set in job.set {
        command.extend(["--set".to_string(), quote(set)]);
    }
    let threads = if r.cpus_per_run.is_some() {
        "# libtorch uses the task's CPUs, not the node's\nexport OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n"
    } else {
        ""
    };
    format!(
        "#!/bin/bash\n{}\n\n# Written by `radrun submit`. Array task I trains run I of the plan (`radrun plan` lists\n\
         # them); runs already done when this was written are left out. Each task claims its run,\n\
         # checkpoints as it trains and on SIGTERM, and resumes from its checkpoint when requeued.\n\
         # Progress: radrun status {} --runs {}\n{threads}exec {}\n",
        options.iter().map(|o| format!("#SBATCH {o}")).collect::<Vec<_>>().join("\n"),
        quote(&job.recipe.display().to_string()),
        quote(&job.runs_root.display().to_string()),
        command.join(" ")
    )
}

/// One submitted job, as `jobs.json` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub job_id: String,
    pub submitted: String,
    pub array: String,
    pub script: PathBuf,
}

/// The jobs submitted for a recipe's runs `folder`, oldest first.
pub fn submitted_jobs(folder: &Path) -> Vec<Submitted> {
    std::fs::read(folder.join("slurm").join("jobs.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Adds a job to `jobs.json`.
pub fn record_job(folder: &Path, job: Submitted) -> Result<(), WriteError> {
    let mut jobs = submitted_jobs(folder);
    jobs.push(job);
    write_atomic(
        &folder.join("slurm").join("jobs.json"),
        &serde_json::to_vec_pretty(&jobs).expect("plain data serializes"),
    )
}

/// Submits a script with `sbatch`; the job id.
pub fn sbatch(script: &Path) -> Result<String, String> {
    let output = Command::new("sbatch").arg("--parsable").arg(script).output().map_err(|e| {
        format!(
            "cannot run sbatch ({e}): `radrun submit --slurm` runs where Slurm's commands are (a login node); \
             --dry-run prints the job script without submitting it"
        )
    })?;
    if !output.status.success() {
        return Err(format!("sbatch refused {}: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // --parsable prints "id" or "id;cluster"
    let id = text.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(format!("sbatch printed no job id for {}", script.display()));
    }
    Ok(id)
}

/// Slurm's state of each array task of a job (by task index), from `squeue`; Slurm
/// forgets finished jobs after MinJobAge (5 minutes by default), and then radrun's own
/// status files are the record.
pub fn task_states(job_id: &str) -> Result<BTreeMap<usize, String>, String> {
    let output = Command::new("squeue")
        .args(["--noheader", "--array", "--states=all", "--jobs", job_id, "--format=%i %T"])
        .output()
        .map_err(|e| format!("cannot run squeue: {e}"))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        // a job Slurm no longer knows is not an error: it ended a while ago
        if message.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(format!("squeue failed: {}", message.trim()));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&output.stdout)))
}

/// Lines `JOB_TASK STATE` (`123_4 RUNNING`; pending tasks may still be grouped as
/// `123_[5-7%2] PENDING`).
fn parse_squeue(text: &str) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once(' ') else { continue };
        let Some((_, task)) = id.split_once('_') else { continue };
        let task = task.trim_start_matches('[').trim_end_matches(']');
        let task = task.split('%').next().unwrap_or_default();
        for part in task.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                for index in a..=b {
                    states.insert(index, state.trim().to_string());
                }
            }
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_list_the_runs_not_done_as_ranges() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[0, 2, 3, 4, 7], None), "0,2-4,7");
        assert_eq!(array_spec(&[5], None), "5");
    }

    #[test]
    fn squeue_lines_give_each_task_its_state() {
        let states = parse_squeue("12_0 COMPLETED\n12_1 RUNNING\n12_[2-3%2] PENDING\n13 RUNNING\n");
        let want: BTreeMap<usize, String> =
            [(0, "COMPLETED"), (1, "RUNNING"), (2, "PENDING"), (3, "PENDING")].map(|(i, s)| (i, s.to_string())).into();
        assert_eq!(states, want);
    }

    #[test]
    fn the_script_runs_radrun_on_the_task_index_with_the_same_flags() {
        let resources = Resources { gpus_per_run: 1, max_parallel: Some(2), ..Default::default() };
        let job = Job {
            recipe_name: "grid",
            radrun: Path::new("/opt/radrun"),
            recipe: Path::new("/data/my recipes/grid.toml"),
            runs_root: Path::new("/scratch/runs"),
            set: &["train.epochs=2".to_string(), "data.labels='x y'".to_string()],
            indices: &[0, 1, 3],
            resources: &resources,
            extra: &["--qos=short".to_string()],
            log_folder: Path::new("/scratch/my runs/grid/slurm"),
        };
        let text = script(&job);
        for line in [
            "#SBATCH --array=0-1,3%2",
            "#SBATCH --output=\"/scratch/my runs/grid/slurm/%A_%a.out\"",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --qos=short",
            "#SBATCH --signal=B:TERM@120",
            "exec /opt/radrun run '/data/my recipes/grid.toml' --index \"$SLURM_ARRAY_TASK_ID\" --runs /scratch/runs \
             --set train.epochs=2 --set 'data.labels='\\''x y'\\'''",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}
