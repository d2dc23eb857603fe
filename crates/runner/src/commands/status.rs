//! `radrun status RECIPE`: where each run stands, from the run folders (and, for runs
//! submitted to Slurm, squeue), and the run folders no run of the recipe has any more;
//! rebuilds summary.csv on the way.

use std::collections::BTreeMap;
use std::path::Path;

use radrun_data::paths::path_text;
use serde::Serialize;

use super::clean::{Orphan, orphans};
use crate::cli::StatusArgs;
use crate::cluster::slurm;
use crate::error::RadrunError;
use crate::recipe::plan::PlannedRun;
use crate::store::claim::read_claim;
use crate::store::{RunDir, State};

/// One run as `radrun status` shows it.
#[derive(Debug, Serialize)]
struct RunState {
    index: usize,
    run_id: String,
    /// pending, running, done, failed, interrupted or stale.
    state: &'static str,
    epochs_done: usize,
    epochs: u32,
    best_val_loss: Option<f64>,
    host: Option<String>,
    pid: Option<u32>,
    heartbeat_seconds_ago: Option<f64>,
    /// The error's first line, where it stopped, or why a claim is stale.
    detail: Option<String>,
    /// The state of its Slurm array task, while Slurm knows it.
    slurm: Option<String>,
}

impl RunState {
    fn of(index: usize, run: &PlannedRun, dir: &RunDir, stale_after: std::time::Duration) -> Self {
        let status = dir.status();
        let checkpoint = dir.checkpoint_meta();
        let val_losses = match &checkpoint {
            Some(meta) => meta.progress.records.iter().map(|r| r.val_loss).collect(),
            None => dir.val_losses(),
        };
        let mut state = RunState {
            index,
            run_id: run.id.clone(),
            state: "pending",
            epochs_done: val_losses.len(),
            epochs: run.settings.train.total_epochs(),
            best_val_loss: val_losses.iter().copied().filter(|v| v.is_finite()).min_by(f64::total_cmp),
            host: None,
            pid: None,
            heartbeat_seconds_ago: None,
            detail: None,
            slurm: None,
        };
        let done = status.as_ref().is_some_and(|s| s.state == State::Done);
        if let Some(claim) = read_claim(&dir.claim_path())
            // a claim left by a process that died after its run was done does not count
            && !(done && claim.stale_reason(stale_after).is_some())
        {
            state.host = Some(claim.host.clone());
            state.pid = Some(claim.pid);
            state.heartbeat_seconds_ago = Some(claim.heartbeat_age());
            match claim.stale_reason(stale_after) {
                None => state.state = "running",
                Some(reason) => {
                    state.state = "stale";
                    state.detail = Some(format!("{reason}; the next radrun to start takes it over"));
                }
            }
            return state;
        }
        match status {
            None if checkpoint.is_some() => state.detail = Some("has a checkpoint to go on from".into()),
            None => {}
            Some(s) => match s.state {
                State::Done => state.state = "done",
                State::Failed => {
                    state.state = "failed";
                    state.detail = s.error.as_deref().and_then(|e| e.lines().next()).map(str::to_string);
                }
                State::Interrupted => {
                    state.state = "interrupted";
                    state.detail = s.note;
                }
                State::Running => {
                    state.state = "stale";
                    state.detail =
                        Some(format!("no process claims it (process {} on {} ended); rerun to go on", s.pid, s.host));
                }
            },
        }
        state
    }
}

pub fn status(args: &StatusArgs) -> Result<(), RadrunError> {
    let plan = super::load_plan(&args.plan)?;
    let folder = args.runs.join(&plan.recipe_name);
    let mut states: Vec<RunState> = plan
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| RunState::of(i, run, &RunDir::new(folder.join(&run.id)), plan.stale_after))
        .collect();
    let jobs = slurm::submitted_jobs(&folder);
    let mut slurm_note = None;
    for job in &jobs {
        match slurm::task_states(&job.job_id) {
            Ok(tasks) => {
                for (task, state) in tasks {
                    if let Some(run) = states.get_mut(task) {
                        run.slurm = Some(format!("{} (job {})", state, job.job_id));
                    }
                }
            }
            Err(e) => slurm_note = Some(e),
        }
    }
    if folder.is_dir()
        && let Err(e) = crate::run::write_plan_summary(&folder, &plan)
    {
        // a read-only runs folder (a colleague's, a read-only mount) is still shown
        eprintln!("note: summary.csv not rebuilt: {e}: {}", e.source);
    }
    let orphans = orphans(&folder, &plan);
    let total = states.len();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &states {
        *counts.entry(s.state).or_default() += 1;
    }
    if args.json {
        let value = serde_json::json!({
            "recipe": plan.recipe_path,
            "folder": folder,
            "counts": counts,
            "slurm_jobs": jobs.iter().map(|j| &j.job_id).collect::<Vec<_>>(),
            "slurm_error": slurm_note,
            "runs": states,
            "orphans": orphans,
        });
        println!("{}", serde_json::to_string_pretty(&value).expect("plain data serializes"));
    } else {
        print_table(&plan.recipe_path, &folder, &states, &counts, &jobs, slurm_note.as_deref());
        print_orphans(&orphans, &folder, &plan.recipe_path, args);
    }
    let done = counts.get("done").copied().unwrap_or(0);
    match counts.get("failed").copied().unwrap_or(0) {
        0 if done == total => Ok(()),
        0 => Err(RadrunError::Unfinished { unfinished: total - done, total }),
        failed => Err(RadrunError::RunsFailed { failed, total, summary: folder.join("summary.csv") }),
    }
}

fn print_table(
    recipe: &Path,
    folder: &Path,
    states: &[RunState],
    counts: &BTreeMap<&str, usize>,
    jobs: &[slurm::Submitted],
    slurm_note: Option<&str>,
) {
    let tally: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    println!("{}: {} run(s) in {}: {}", path_text(recipe), states.len(), path_text(folder), tally.join(", "));
    if let Some(job) = jobs.last() {
        println!("Slurm job {} (array {}), submitted {}", job.job_id, job.array, job.submitted);
    }
    if let Some(note) = slurm_note {
        println!("Slurm: {note}");
    }
    let width = states.iter().map(|s| s.run_id.len()).max().unwrap_or(6).max(6);
    println!(
        "{:>5}  {:<width$}  {:<11}  {:>9}  {:>13}  where / why",
        "index", "run", "state", "epochs", "best val_loss"
    );
    for s in states {
        let best = s.best_val_loss.map_or("-".to_string(), |v| format!("{v:.4}"));
        let mut why: Vec<String> = Vec::new();
        if s.state == "running" {
            let ago = s.heartbeat_seconds_ago.map_or(String::new(), |a| format!(", heartbeat {a:.0} s ago"));
            why.push(format!("{} pid {}{ago}", s.host.as_deref().unwrap_or("?"), s.pid.unwrap_or(0)));
        }
        why.extend(s.detail.clone());
        why.extend(s.slurm.as_ref().map(|state| format!("Slurm: {state}")));
        let line = format!(
            "{:>5}  {:<width$}  {:<11}  {:>9}  {:>13}  {}",
            s.index,
            s.run_id,
            s.state,
            format!("{}/{}", s.epochs_done, s.epochs),
            best,
            why.join("; ")
        );
        println!("{}", line.trim_end());
    }
}

/// The run folders no run of the recipe has any more, and the command that removes them.
fn print_orphans(orphans: &[Orphan], folder: &Path, recipe: &Path, args: &StatusArgs) {
    if orphans.is_empty() {
        return;
    }
    println!(
        "\n{} orphaned run folder(s) in {}: no run of the recipe has their id now (a setting or a --set flag changed)",
        orphans.len(),
        path_text(folder)
    );
    let width = orphans.iter().map(|o| o.run_id.len()).max().unwrap_or(0);
    for o in orphans {
        let kept = o.kept_because.as_ref().map(|reason| format!("; `radrun clean` keeps it: {reason}"));
        println!("  {:<width$}  {:<11}  {}{}", o.run_id, o.state, o.detail, kept.unwrap_or_default());
    }
    let quote = |path: &Path| slurm::quote(&path_text(path));
    let mut command = vec!["radrun".to_string(), "clean".into(), quote(recipe)];
    if args.runs.as_path() != Path::new("runs") {
        command.extend(["--runs".into(), quote(args.runs.as_path())]);
    }
    for set in &args.plan.set {
        command.extend(["--set".into(), slurm::quote(set)]);
    }
    command.push("--orphans".into());
    println!("`{}` removes them; with --dry-run it lists what it would remove", command.join(" "));
}
