//! `[track]`: what TensorBoard's own reader (`EventAccumulator`, PyPI `tensorboard`)
//! finds in a run's event files, and what a real MLflow tracking server holds (read with
//! MLflow's own client), each compared with the run folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use radrun_runner::store::tensorboard::EventFile;

use crate::common::{Project, TINY, only_run, stderr};

/// Reads the event files of `folder` with TensorBoard's `EventAccumulator`: every
/// scalar tag's `[step, value]` points and every image tag's `[step, width, height]`.
const READ_EVENTS: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
events.Reload()
tags = events.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in events.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height] for e in events.Images(t)] for t in tags["images"]},
}))
"#;

/// What TensorBoard reads in `folder`; None outside CI without the test venv.
pub(crate) fn read_events(folder: &Path) -> Option<serde_json::Value> {
    let python = std::env::var_os("RADRUN_VENV").map(|v| PathBuf::from(v).join("bin/python")).filter(|p| p.exists());
    assert!(python.is_some() || !radrun_data::testing::in_ci(), "the test venv is missing: scripts/setup.sh --test");
    let out = Command::new(python?).args(["-c", READ_EVENTS]).arg(folder).output().unwrap();
    assert!(out.status.success(), "EventAccumulator: {}", stderr(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The `[step, value]` points of a scalar tag.
fn points(events: &serde_json::Value, tag: &str) -> Vec<(u64, f64)> {
    let found = events["scalars"][tag].as_array().unwrap_or_else(|| panic!("no scalar {tag} in {events}"));
    found.iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect()
}

/// Every epoch of metrics.csv is in the run's event files once, at its epoch as step,
/// with its value in float32 (TensorBoard's simple_value): losses, accuracies, rate.
pub(crate) fn assert_events_match_metrics(run: &Path) {
    let Some(events) = read_events(&run.join("tensorboard")) else { return };
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    for (tag, column) in [
        ("train/loss", "train_loss"),
        ("train/accuracy", "train_accuracy"),
        ("val/loss", "val_loss"),
        ("learning_rate", "lr"),
    ] {
        let at = header.iter().position(|c| c == column).unwrap();
        let want: Vec<(u64, f64)> =
            rows.iter().map(|r| (r[0].parse().unwrap(), f64::from(r[at].parse::<f64>().unwrap() as f32))).collect();
        assert_eq!(points(&events, tag), want, "{tag} against metrics.csv's {column}");
    }
}

#[test]
fn tensorboard_shows_every_epoch_and_the_test_results_of_the_run_folder() {
    let p = Project::two_classes(6);
    let name = p.recipe("tracked.toml", &format!("{TINY}\n[report]\ngallery = 3\n\n[track]\ntensorboard = true\n"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "tracked");
    assert_events_match_metrics(&run);
    let Some(events) = read_events(&run.join("tensorboard")) else { return };
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    let step = status["evaluated_epoch"].as_u64().unwrap();
    let test = status["test"].as_object().unwrap();
    assert!(test.len() >= 4, "{status}");
    for (metric, value) in test {
        let want = f64::from(value.as_f64().unwrap() as f32);
        assert_eq!(points(&events, &format!("test/{metric}")), [(step, want)], "test/{metric}");
    }
    // two classes: a 2 x 2 matrix of 32-pixel cells; the gallery's 3 images, 32 x 32
    assert_eq!(events["images"]["test/confusion_matrix"], serde_json::json!([[step, 64, 64]]), "{events}");
    for k in ["000", "001", "002"] {
        assert_eq!(events["images"][format!("test/gallery/{k}")], serde_json::json!([[step, 32, 32]]), "{events}");
    }
    assert_eq!(events["images"].as_object().unwrap().len(), 4, "{events}");
}

#[test]
fn a_resumed_session_replaces_the_points_of_the_epochs_it_trains_again() {
    let dir = tempfile::tempdir().unwrap();
    // the first process records epochs 1 to 3 and dies; the second resumes at epoch 2
    let mut first = EventFile::create(dir.path(), Some(1)).unwrap();
    for epoch in 1..=3 {
        first.scalars(epoch, &[("val/loss".into(), f64::from(epoch))]).unwrap();
    }
    let mut second = EventFile::create(dir.path(), Some(2)).unwrap();
    for epoch in 2..=4 {
        second.scalars(epoch, &[("val/loss".into(), f64::from(epoch) * 10.0)]).unwrap();
    }
    let Some(events) = read_events(&dir.path().join("tensorboard")) else { return };
    assert_eq!(points(&events, "val/loss"), [(1, 1.0), (2, 20.0), (3, 30.0), (4, 40.0)]);
}

/// A real MLflow tracking server (`mlflow server` of the venv scripts/setup.sh --mlflow
/// makes, `RADRUN_MLFLOW_VENV`) on 127.0.0.1, its SQLite store and artifacts in a
/// folder of its own; killed with its workers when dropped.
struct MlflowServer {
    process: std::process::Child,
    pub uri: String,
    venv: PathBuf,
}

impl MlflowServer {
    /// None outside CI without the venv.
    fn venv() -> Option<PathBuf> {
        let venv = std::env::var_os("RADRUN_MLFLOW_VENV").map(PathBuf::from).filter(|v| v.join("bin/mlflow").exists());
        assert!(venv.is_some() || !radrun_data::testing::in_ci(), "no MLflow venv: scripts/setup.sh --mlflow makes it");
        venv
    }

    /// A server on `port` (0: a free one) keeping its records in `store`; answers /health.
    fn start(venv: &Path, store: &Path, port: u16) -> MlflowServer {
        use std::os::unix::process::CommandExt;
        let port = if port > 0 {
            port
        } else {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        };
        let process = Command::new(venv.join("bin/mlflow"))
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", store.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(store.join("artifacts"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let server = MlflowServer { process, uri: format!("http://127.0.0.1:{port}"), venv: venv.to_path_buf() };
        let started = std::time::Instant::now();
        while !server.answers() {
            assert!(started.elapsed() < std::time::Duration::from_secs(180), "mlflow server did not start");
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        server
    }

    fn port(&self) -> u16 {
        self.uri.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn answers(&self) -> bool {
        let health = format!("{}/health", self.uri);
        ureq::get(&health).call().is_ok_and(|r| r.status() == 200)
    }

    /// What the server holds of experiment `name`, read with MLflow's own Python client:
    /// each run's name, status, tags, params, metric histories and artifacts.
    fn read(&self, name: &str) -> serde_json::Value {
        let out =
            Command::new(self.venv.join("bin/python")).args(["-c", READ_MLFLOW, &self.uri, name]).output().unwrap();
        assert!(out.status.success(), "mlflow client: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // SAFETY: a signal to the process group the server leads
        unsafe { libc::kill(-(self.process.id() as i32), libc::SIGKILL) };
        let _ = self.process.wait();
    }
}

const READ_MLFLOW: &str = r#"
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
runs = []
for run in client.search_runs([experiment.experiment_id]):
    history = lambda key: sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
    # a batch the server stored as it was killed, before radrun heard back, is sent again:
    # its points come twice, with the same values; each step is read once
    metrics = {key: [[m.step, m.value] for m in {m.step: m for m in history(key)}.values()] for key in run.data.metrics}
    points = sum(len(history(key)) for key in run.data.metrics)
    runs.append({"id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
                 "tags": run.data.tags, "params": run.data.params, "metrics": metrics, "points": points,
                 "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id))})
print(json.dumps(runs))
"#;

/// The run folder's metrics.csv column as MLflow's `[step, value]` history.
fn history(run: &Path, column: &str) -> serde_json::Value {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let at = reader.headers().unwrap().iter().position(|c| c == column).unwrap();
    let points: Vec<serde_json::Value> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            serde_json::json!([r[0].parse::<u64>().unwrap(), r[at].parse::<f64>().unwrap()])
        })
        .collect();
    serde_json::Value::Array(points)
}

/// The one MLflow run of the experiment, checked against the run folder: name and tags,
/// the resolved recipe as params, every epoch, the test metrics, the artifacts, FINISHED.
fn assert_mlflow_has_the_run(server: &MlflowServer, experiment: &str, run: &Path, epochs: &str) {
    let runs = server.read(experiment);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let tracked = &runs[0];
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("mlflow.json")).unwrap()).unwrap();
    assert_eq!(tracked["id"], sent["run_id"], "{tracked}");
    assert_eq!(
        (&tracked["name"], &tracked["status"]),
        (&status["run_id"], &serde_json::json!("FINISHED")),
        "{tracked}"
    );
    assert_eq!(tracked["tags"]["radrun.run_id"], status["run_id"]);
    assert_eq!(tracked["tags"]["radrun.dataset_sha256"], status["provenance"]["dataset"]["sha256"]);
    assert_eq!(tracked["params"]["train.phases.0.epochs"], epochs);
    assert_eq!(tracked["params"]["model.kind"], "cnn");
    assert_eq!(tracked["params"]["data.image_size"], "[32, 32]");
    for (key, column) in [("val_loss", "val_loss"), ("train_loss", "train_loss"), ("lr", "lr")] {
        assert_eq!(tracked["metrics"][key], history(run, column), "{key}");
    }
    let step = status["evaluated_epoch"].clone();
    assert_eq!(tracked["metrics"]["test_accuracy"], serde_json::json!([[step, status["test"]["accuracy"]]]));
    let artifacts = &tracked["artifacts"];
    for name in ["evaluation.json", "metrics.csv", "recipe.toml", "report.html", "status.json"] {
        assert!(artifacts.as_array().unwrap().iter().any(|a| a == name), "{name}: {artifacts}");
    }
}

#[test]
fn mlflow_holds_what_the_run_folder_holds_and_a_server_stopped_mid_run_is_caught_up_by_track_sync() {
    let Some(venv) = MlflowServer::venv() else { return };
    let store = tempfile::tempdir().unwrap();
    let server = MlflowServer::start(&venv, store.path(), 0);
    let p = Project::two_classes(6);
    let track = format!("\n[track]\nmlflow = \"{}\"\nexperiment = \"radrun-test\"\n", server.uri);
    let recipe = TINY.replace("epochs = 2", "epochs = 3");
    p.recipe("tracked.toml", &format!("{recipe}{track}"));
    // the second run trains longer: the server dies after its first epoch, well before its end
    let longer = TINY.replace("epochs = 2", "epochs = 6");
    let out = p.run(&["tracked.toml", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "tracked");
    assert_mlflow_has_the_run(&server, "radrun-test", &run, "3");
    // the server stops after the first epoch reached it: the run finishes all the same
    let port = server.port();
    p.recipe("stopped.toml", &format!("{longer}{}", track.replace("radrun-test", "radrun-stopped")));
    let child = Command::new(env!("CARGO_BIN_EXE_radrun"))
        .args(["stopped.toml", "--quiet"])
        .current_dir(p.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let run = loop {
        let sent = crate::resume::run_folder(&p, "runs", "stopped").and_then(|run| {
            let sent: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("mlflow.json")).ok()?).ok()?;
            (sent["epochs"].as_u64()? >= 1).then_some(run)
        });
        if let Some(run) = sent {
            break run;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "no epoch reached MLflow");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(server);
    let finished = child.wait_with_output().unwrap();
    let said = stderr(&finished);
    assert!(finished.status.success(), "{said}");
    assert!(said.contains("radrun track sync"), "{said}");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "done");
    // back up on the same port and store: track sync sends the rest, once
    let server = MlflowServer::start(&venv, store.path(), port);
    let synced = p.run(&["track", "sync", "runs/stopped"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert_mlflow_has_the_run(&server, "radrun-stopped", &run, "6");
    // nothing is sent twice: a second sync adds no point
    let points = server.read("radrun-stopped")[0]["points"].clone();
    let again = p.run(&["track", "sync", "runs/stopped"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.read("radrun-stopped")[0]["points"], points);
}
