//! Sweeps as Slurm job arrays, on the real one-node Slurm that
//! scripts/test.sh starts (scripts/slurm.sh; `SLURM_CONF` points at it): the array's
//! runs end with the numbers of a local run, and a task cancelled mid-run goes on from
//! its checkpoint when the sweep is submitted again.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Project, TINY, stderr, stdout};
use crate::resume::{assert_same_results, checkpoint_position, run_folder};

/// Whether the local Slurm is there; in CI it must be.
fn slurm_available() -> bool {
    if std::env::var_os("SLURM_CONF").is_some() {
        return true;
    }
    assert!(
        !radrun_data::testing::in_ci(),
        "SLURM_CONF is not set: scripts/test.sh starts a local Slurm for these tests (scripts/slurm.sh)"
    );
    eprintln!("skipped: no local Slurm (run the tests with scripts/test.sh, which starts one)");
    false
}

/// `radrun submit` the recipe; the job id.
fn submit(p: &Project, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["submit", name, "--slurm", "--cpus-per-run", "1", "--set", "train.threads=1"];
    args.extend_from_slice(extra);
    let out = p.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Waits until `radrun status` exits 0 (every run done) or a run fails.
fn wait_until_done(p: &Project, name: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let status = p.run(&["status", name, "--set", "train.threads=1"]);
        match status.status.code() {
            Some(0) => return stdout(&status),
            Some(4) => {}
            _ => panic!("{}\n{}", stdout(&status), stderr(&status)),
        }
        assert!(started.elapsed() < limit, "not done after {limit:?}:\n{}", stdout(&status));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn scancel(job: &str) {
    let out = std::process::Command::new("scancel").arg(job).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_sweep_runs_as_a_job_array_with_the_numbers_of_a_local_run() {
    if !slurm_available() {
        return;
    }
    let p = Project::new(3);
    let recipe =
        TINY.to_string() + "\n[sweep]\n\"train.learning_rate\" = [0.001, 0.003]\n\"model.dense_units\" = [8, 16]\n";
    let name = p.recipe("array.toml", &recipe);
    let dry = p.run(&["submit", &name, "--slurm", "--dry-run", "--max-parallel", "2", "--gpus-per-run", "1"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("#SBATCH --array=0-3%2") && stdout(&dry).contains("#SBATCH --gres=gpu:1"));
    assert!(!p.path().join("runs/array/slurm").exists(), "a dry run writes nothing");

    // the test Slurm has two stand-in GPUs: two tasks at a time, one GPU each
    let job = submit(&p, &name, &["--gpus-per-run", "1"]);
    let script = std::fs::read_to_string(p.path().join("runs/array/slurm/submit.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3") && script.contains("--index \"$SLURM_ARRAY_TASK_ID\""), "{script}");
    let jobs = std::fs::read_to_string(p.path().join("runs/array/slurm/jobs.json")).unwrap();
    assert!(jobs.contains(&format!("\"job_id\": \"{job}\"")), "{jobs}");
    let table = wait_until_done(&p, &name, Duration::from_secs(600));
    assert_eq!(table.matches(" done ").count(), 4, "{table}");
    // each run records the task that trained it, with the GPU Slurm gave it
    let status = p.run(&["status", &name, "--json", "--set", "train.threads=1"]);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    for (index, run) in runs["runs"].as_array().unwrap().iter().enumerate() {
        let folder = p.path().join("runs/array").join(run["run_id"].as_str().unwrap());
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("status.json")).unwrap()).unwrap();
        let task = &status["slurm"];
        assert_eq!(task["array_job_id"], job.as_str(), "{status}");
        assert_eq!(task["array_task_id"], index.to_string().as_str(), "{status}");
        assert!(["0", "1"].contains(&task["cuda_visible_devices"].as_str().unwrap_or("none")), "{status}");
    }

    // the same sweep trained here, one process
    let local = p.run(&[&name, "--quiet", "--runs", "local", "--set", "train.threads=1"]);
    assert!(local.status.success(), "{}", stderr(&local));
    let mut compared = 0;
    for entry in std::fs::read_dir(p.path().join("local/array")).unwrap() {
        let here = entry.unwrap().path();
        if here.join("recipe.toml").exists() {
            assert_same_results(&p.path().join("runs/array").join(here.file_name().unwrap()), &here);
            compared += 1;
        }
    }
    assert_eq!(compared, 4);
    // nothing left to submit
    let again = p.run(&["submit", &name, "--slurm", "--set", "train.threads=1"]);
    assert!(again.status.success() && stderr(&again).contains("nothing to submit"), "{}", stderr(&again));
}

#[test]
fn a_cancelled_task_resumes_from_its_checkpoint_when_resubmitted() {
    if !slurm_available() {
        return;
    }
    let p = Project::new(20);
    let name = p.recipe("cancel.toml", &TINY.replace("epochs = 2", "epochs = 25"));
    let job = submit(&p, &name, &[]);
    let started = Instant::now();
    let run = loop {
        if let Some(run) = run_folder(&p, "runs", "cancel")
            && checkpoint_position(&run).is_some_and(|(epochs, _)| epochs >= 1)
        {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    scancel(&job);
    let stopped = wait_for_state(&run, "interrupted", Duration::from_secs(60));
    assert!(stopped["note"].as_str().unwrap().contains("stopped by SIGTERM"), "{stopped}");
    let (epochs, _) = checkpoint_position(&run).unwrap();
    assert!(epochs < 25, "cancelled before the end");
    let status = p.run(&["status", &name, "--set", "train.threads=1"]);
    assert_eq!(status.status.code(), Some(4));
    assert!(stdout(&status).contains("interrupted"), "{}", stdout(&status));

    submit(&p, &name, &[]);
    wait_until_done(&p, &name, Duration::from_secs(600));
    let done: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert!(done["note"].as_str().unwrap().starts_with("resumed from its checkpoint after epoch"), "{done}");
    let local = p.run(&[&name, "--quiet", "--runs", "local", "--set", "train.threads=1"]);
    assert!(local.status.success(), "{}", stderr(&local));
    assert_same_results(&run, &run_folder(&p, "local", "cancel").unwrap());
}

/// Waits until the run's status.json says `state`.
fn wait_for_state(run: &Path, state: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(run.join("status.json"))
            && let Ok(status) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && status["state"] == state
        {
            return status;
        }
        assert!(started.elapsed() < limit, "{} is not {state} after {limit:?}", run.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}
