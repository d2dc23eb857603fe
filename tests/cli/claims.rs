//! Many processes on one runs folder: each run is trained by exactly one
//! process, whichever started first; summary.csv ends complete; a stale claim is taken
//! over, a live one of another machine is left alone; `radrun status` says who trains what.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{Project, TINY, stderr, stdout};

/// Six runs of one epoch on 16 x 16 images.
fn six_runs() -> String {
    TINY.replace("image_size = [32, 32]", "image_size = [16, 16]").replace("epochs = 2", "epochs = 1")
        + "\n[sweep]\n\"train.learning_rate\" = [0.001, 0.002, 0.003]\n\"model.dense_units\" = [8, 16]\n"
}

/// Each run's number of "run started" lines in train.log (appended by every process that
/// trains it).
fn starts(folder: &Path) -> Vec<(String, usize)> {
    let mut starts: Vec<(String, usize)> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "slurm")
        .map(|run| {
            let log = std::fs::read_to_string(run.join("train.log")).unwrap_or_default();
            (run.file_name().unwrap().to_string_lossy().into_owned(), log.matches("started by process").count())
        })
        .collect();
    starts.sort();
    starts
}

/// `processes` radrun processes started together on the same recipe and folder; for
/// each run id, how many of them started training it (their `--json` events).
fn race(project: &Project, name: &str, processes: usize) -> BTreeMap<String, usize> {
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_radrun"))
                .args([name, "--json", "--set", "train.threads=1"])
                .current_dir(project.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["event"] == "run_started" {
                *started.entry(event["run"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    }
    started
}

#[test]
fn concurrent_processes_train_each_run_exactly_once() {
    let p = Project::new(2);
    let name = p.recipe("race.toml", &six_runs());
    let folder = p.path().join("runs/race");
    // the race is decided in microseconds: run it several times
    for (round, processes) in [2, 4, 2, 4, 4].into_iter().enumerate() {
        let started = race(&p, &name, processes);
        assert_eq!(started.len(), 6, "round {round}: {started:?}");
        assert!(started.values().all(|n| *n == 1), "round {round}, {processes} processes: {started:?}");
        let summary = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
        assert_eq!(summary.lines().count(), 7, "{summary}");
        assert_eq!(summary.matches(",done,").count(), 6, "round {round}: every row done:\n{summary}");
        assert!(!std::fs::read_dir(&folder).unwrap().any(|e| {
            let run = e.unwrap().path();
            run.join("claim.json").exists() || run.join("checkpoint.safetensors").exists()
        }));
        std::fs::remove_dir_all(&folder).unwrap();
    }
}

/// A claim of another machine, with a heartbeat `age_seconds` old.
fn foreign_claim(run: &Path, age_seconds: i64) {
    let heartbeat = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(age_seconds)).unwrap();
    let claim = serde_json::json!({
        "host": "node-17.cluster", "pid": 4242, "token": "node-17.cluster-4242-1",
        "started": heartbeat.to_string(), "heartbeat": heartbeat.to_string(),
    });
    std::fs::create_dir_all(run).unwrap();
    std::fs::write(run.join("claim.json"), serde_json::to_vec(&claim).unwrap()).unwrap();
}

#[test]
fn a_live_claim_of_another_machine_is_left_alone_and_a_stale_one_taken_over() {
    let p = Project::new(2);
    let name = p.recipe("claimed.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let planned = p.run(&["plan", &name]);
    let id = stdout(&planned)
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("claimed-")))
        .map(String::from);
    let id = id.unwrap_or_else(|| panic!("no run id in:\n{}", stdout(&planned)));
    let run = p.path().join("runs/claimed").join(&id);

    // fresh: another machine trains it
    foreign_claim(&run, 20);
    let out = p.run(&[&name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("claimed by process 4242 on node-17.cluster"), "{}", stderr(&out));
    assert!(!run.join("status.json").exists(), "nothing of the other machine's run is touched");
    let status = p.run(&["status", &name]);
    assert_eq!(status.status.code(), Some(4), "not done yet");
    assert!(
        stdout(&status).contains("running") && stdout(&status).contains("node-17.cluster pid 4242"),
        "{}",
        stdout(&status)
    );

    // 11 minutes without a heartbeat: stale (run.stale_after is 10 minutes)
    foreign_claim(&run, 660);
    let status = p.run(&["status", &name]);
    assert!(stdout(&status).contains("stale"), "{}", stdout(&status));
    let out = p.run(&[&name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("took over the claim of process 4242 on node-17.cluster"), "{}", stderr(&out));
    let status = p.run(&["status", &name, "--json"]);
    assert_eq!(status.status.code(), Some(0), "all done: {}", stdout(&status));
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(json["runs"][0]["state"], "done");
    assert_eq!(json["runs"][0]["epochs_done"], 1);

    // a claim on a done run: live (by default, 10 minutes) it means a retraining under
    // way; stale (after 3 minutes) it is left over and the run counts as done
    foreign_claim(&run, 200);
    let status = p.run(&["status", &name]);
    assert!(stdout(&status).contains("running"), "{}", stdout(&status));
    let status = p.run(&["status", &name, "--set", "run.stale_after=\"3m\""]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    let refused = p.run(&["status", &name, "--set", "run.stale_after=\"20s\""]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("`run.stale_after` is 20s, shorter than 120 s"), "{}", stderr(&refused));
}

#[test]
fn index_and_run_pick_one_run_and_bad_ones_say_what_exists() {
    let p = Project::new(2);
    let name = p.recipe("pick.toml", &six_runs());
    let out = p.run(&["run", &name, "--index", "4", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trained: Vec<(String, usize)> =
        starts(&p.path().join("runs/pick")).into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(trained.len(), 1, "{trained:?}");
    let status = p.run(&["status", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    let done: Vec<u64> = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "done")
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(done, [4]);
    assert_eq!(json["runs"][4]["run_id"], trained[0].0.as_str());
    let by_id = p.run(&["run", &name, "--run", json["runs"][0]["run_id"].as_str().unwrap(), "--quiet"]);
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    assert_eq!(starts(&p.path().join("runs/pick")).iter().filter(|(_, n)| *n > 0).count(), 2);

    let past = p.run(&["run", &name, "--index", "6"]);
    assert_eq!(past.status.code(), Some(2));
    assert!(stderr(&past).contains("--index 6 is past the plan's last run") && stderr(&past).contains("has 6 run(s)"));
    let unknown = p.run(&["run", &name, "--run", "pick-nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("--run pick-nope is not a run of"), "{}", stderr(&unknown));
}
