//! MLflow tracking (`[track] mlflow`): each run folder mirrored into an MLflow run
//! through the tracking server's REST API (api/2.0/mlflow, and mlflow-artifacts for the
//! files): the resolved recipe as flattened params, tags (run id, recipe, fold, seed,
//! radrun's commit, the dataset fingerprint), each epoch of metrics.csv with the epoch as
//! step, the test metrics and their intervals, and as artifacts `recipe.toml`,
//! `evaluation.json`, `metrics.csv`, `status.json` and the recipe's report.
//!
//! The run folder is the record and MLflow its copy: [`sync`] sends what the folder
//! holds and MLflow lacks, and notes in `mlflow.json` (the folder's) what was sent and
//! the MLflow run's id, so that a resumed run continues its MLflow run and sending again
//! never sends twice. Training hands run folders to a [`Tracker`], whose thread syncs
//! them with back-off while the server is down or slow: training never waits for it.
//! What is still unsent when radrun ends is a warning, and `radrun track sync
//! runs/<recipe>` sends it later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::{RunDir, State, Status, write_atomic};

/// The file of a run folder that says where its MLflow run is and what it was sent.
pub const SENT_FILE: &str = "mlflow.json";
/// Held while a process sends a folder.
const LOCK_FILE: &str = ".mlflow.lock";

/// Files of a run folder sent as artifacts once the run is over (those it has).
const ARTIFACTS: [&str; 4] = ["recipe.toml", "evaluation.json", "metrics.csv", "status.json"];

/// MLflow's limits per `runs/log-batch` request.
const PARAMS_PER_BATCH: usize = 100;
const METRICS_PER_BATCH: usize = 1000;
/// How long one request may take before it counts as failed (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// MLflow keeps a param value of at most this many characters.
const LONGEST_PARAM: usize = 6000;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server cannot be reached, or failed (retried).
    #[error("MLflow at {uri}: {why}")]
    Server { uri: String, why: String },
    /// The server refused the request as it is (HTTP 4xx): sending it again cannot help.
    #[error("MLflow at {uri} refused it: {why}")]
    Rejected { uri: String, why: String },
    #[error("{path}: {why}")]
    Folder { path: PathBuf, why: String },
}

/// `mlflow.json`: where the run is tracked and what of the folder MLflow has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub tracking_uri: String,
    pub experiment: String,
    #[serde(default)]
    pub experiment_id: String,
    /// The MLflow run, once created (kept across resumes).
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub params: bool,
    /// Epochs of metrics.csv sent.
    #[serde(default)]
    pub epochs: usize,
    /// The test metrics sent.
    #[serde(default)]
    pub results: bool,
    /// Where the run's artifacts go (`runs/create`'s answer): radrun uploads through the
    /// server's artifact proxy (`mlflow-artifacts:/...`) only.
    #[serde(default)]
    pub artifact_uri: String,
    /// Artifacts sent, with the modification time (ns) of the file sent.
    #[serde(default)]
    pub artifacts: BTreeMap<String, u128>,
    /// The state MLflow was told the run ended in.
    #[serde(default)]
    pub ended: Option<String>,
    /// A resumed run whose MLflow run was ended: it is marked running again.
    #[serde(default)]
    pub reopen: bool,
}

impl Sent {
    /// The folder's record, if it is tracked.
    pub fn read(dir: &Path) -> Option<Sent> {
        serde_json::from_slice(&std::fs::read(dir.join(SENT_FILE)).ok()?).ok()
    }

    /// Starts tracking `dir`, which goes on from `resumed_epochs` epochs (0: from the
    /// start): what was sent to the same server and experiment is kept up to there, and
    /// a run MLflow was told had ended runs again.
    pub fn start(dir: &Path, tracking_uri: &str, experiment: &str, resumed_epochs: usize) -> Result<(), MlflowError> {
        let same = Sent::read(dir).filter(|s| s.tracking_uri == tracking_uri && s.experiment == experiment);
        let mut sent = same.unwrap_or(Sent {
            tracking_uri: tracking_uri.into(),
            experiment: experiment.into(),
            ..Sent::default()
        });
        sent.epochs = sent.epochs.min(resumed_epochs);
        if sent.ended.take().is_some() {
            sent.reopen = true;
        }
        sent.results = false;
        sent.write(dir)
    }

    fn write(&self, dir: &Path) -> Result<(), MlflowError> {
        let text = serde_json::to_string_pretty(self).expect("plain data serializes");
        write_atomic(&dir.join(SENT_FILE), text.as_bytes())
            .map_err(|e| MlflowError::Folder { path: e.path.clone(), why: e.source.to_string() })
    }
}

/// The tracking server, by its REST API.
struct Server {
    uri: String,
    agent: ureq::Agent,
}

impl Server {
    fn new(uri: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Server { uri: uri.trim_end_matches('/').to_string(), agent }
    }

    fn fail(&self, why: impl ToString) -> MlflowError {
        MlflowError::Server { uri: self.uri.clone(), why: why.to_string() }
    }

    /// A call of api/2.0/mlflow: its JSON answer, or the server's error.
    fn call(&self, method: &str, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.uri);
        let answer = match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                for (key, value) in body.as_object().into_iter().flatten() {
                    request = request.query(key, value.as_str().unwrap_or_default());
                }
                request.call()
            }
            _ => self.agent.post(&url).header("Content-Type", "application/json").send(body.to_string()),
        };
        let mut answer = answer.map_err(|e| self.fail(e))?;
        let status = answer.status();
        let text = answer.body_mut().read_to_string().map_err(|e| self.fail(e))?;
        if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 404 {
            let why = format!("{endpoint}: HTTP {status}: {}", text.trim());
            return Err(MlflowError::Rejected { uri: self.uri.clone(), why });
        }
        if !status.is_success() {
            return Err(self.fail(format!("{endpoint}: HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| self.fail(format!("{endpoint}: not JSON ({e})")))
    }

    /// The id of the experiment named `name`, created if missing.
    fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        let found = self.call("GET", "experiments/get-by-name", &json!({ "experiment_name": name }));
        let id = match found {
            Ok(answer) => answer["experiment"]["experiment_id"].clone(),
            Err(MlflowError::Server { why, .. }) if why.contains("RESOURCE_DOES_NOT_EXIST") => {
                self.call("POST", "experiments/create", &json!({ "name": name }))?["experiment_id"].clone()
            }
            Err(e) => return Err(e),
        };
        id.as_str().map(str::to_string).ok_or_else(|| self.fail("the experiment has no id"))
    }

    fn log_batch(&self, run_id: &str, key: &str, items: Vec<Value>, per_batch: usize) -> Result<(), MlflowError> {
        for chunk in items.chunks(per_batch) {
            self.call("POST", "runs/log-batch", &json!({ "run_id": run_id, key: chunk }))?;
        }
        Ok(())
    }

    /// Uploads a file as an artifact of the run through the server's artifact proxy
    /// (`artifact_uri` is `mlflow-artifacts:/<where>`).
    fn upload(&self, artifact_uri: &str, path: &Path, name: &str) -> Result<(), MlflowError> {
        let Some(place) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            let why = format!(
                "the run's artifacts go to {artifact_uri}, not through the server (start it without \
                 --no-serve-artifacts): {name} not uploaded"
            );
            return Err(MlflowError::Rejected { uri: self.uri.clone(), why });
        };
        let bytes = std::fs::read(path).map_err(|e| MlflowError::Folder { path: path.into(), why: e.to_string() })?;
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}", self.uri, place.trim_start_matches('/'));
        let answer = self.agent.put(&url).send(&bytes[..]).map_err(|e| self.fail(e))?;
        match answer.status().is_success() {
            true => Ok(()),
            false => Err(self.fail(format!("uploading {name}: HTTP {}", answer.status()))),
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// When the run started (its status), for MLflow's start time; now if unreadable.
fn started_ms(status: &Status) -> i64 {
    status.started.parse::<jiff::Timestamp>().map_or_else(|_| now_ms(), |t| t.as_millisecond())
}

/// metrics.csv as rows of (column, value), the epoch first.
fn metric_rows(dir: &Path) -> Vec<Vec<(String, f64)>> {
    let Ok(mut reader) = csv::Reader::from_path(dir.join("metrics.csv")) else { return Vec::new() };
    let Ok(header) = reader.headers().cloned() else { return Vec::new() };
    reader
        .records()
        .filter_map(Result::ok)
        .map(|row| {
            header.iter().zip(row.iter()).filter_map(|(c, v)| Some((c.to_string(), v.parse::<f64>().ok()?))).collect()
        })
        .collect()
}

/// Sends what `dir` holds and its MLflow run lacks (nothing for a folder not tracked).
pub fn sync(dir: &Path) -> Result<(), MlflowError> {
    // one process at a time sends a folder (workers, Slurm tasks, `track sync`)
    let lock_path = dir.join(LOCK_FILE);
    let folder_error = |e: std::io::Error| MlflowError::Folder { path: lock_path.clone(), why: e.to_string() };
    let lock = std::fs::File::create(&lock_path).map_err(folder_error)?;
    lock.lock().map_err(folder_error)?;
    let Some(mut sent) = Sent::read(dir) else { return Ok(()) };
    let server = Server::new(&sent.tracking_uri);
    let status = RunDir::new(dir.to_path_buf())
        .status()
        .ok_or_else(|| MlflowError::Folder { path: dir.join("status.json"), why: "missing or unreadable".into() })?;
    if sent.run_id.is_empty() {
        sent.experiment_id = server.experiment(&sent.experiment)?;
        let created = server.call(
            "POST",
            "runs/create",
            &json!({
                "experiment_id": sent.experiment_id,
                "run_name": status.run_id,
                "start_time": started_ms(&status),
                "tags": tags(dir, &status),
            }),
        )?;
        let info = &created["run"]["info"];
        sent.run_id = info["run_id"].as_str().unwrap_or_default().to_string();
        sent.artifact_uri = info["artifact_uri"].as_str().unwrap_or_default().to_string();
        sent.write(dir)?;
    }
    if sent.reopen {
        server.call("POST", "runs/update", &json!({ "run_id": sent.run_id, "status": "RUNNING" }))?;
        sent.reopen = false;
        sent.write(dir)?;
    }
    if !sent.params {
        server.log_batch(&sent.run_id, "params", params(dir)?, PARAMS_PER_BATCH)?;
        sent.params = true;
        sent.write(dir)?;
    }
    send_epochs(&server, &mut sent, dir)?;
    let over = matches!(status.state, State::Done | State::Failed | State::Interrupted);
    if over {
        finish(&server, &mut sent, dir, &status)?;
    }
    Ok(())
}

fn send_epochs(server: &Server, sent: &mut Sent, dir: &Path) -> Result<(), MlflowError> {
    let rows = metric_rows(dir);
    // metrics.csv started again (its checkpoint could not be used): so does the count
    sent.epochs = sent.epochs.min(rows.len());
    if rows.len() == sent.epochs {
        return Ok(());
    }
    let timestamp = now_ms();
    let metrics: Vec<Value> = rows[sent.epochs..]
        .iter()
        .flat_map(|row| {
            let step = row.first().map_or(0.0, |(_, epoch)| *epoch) as i64;
            row.iter()
                .skip(1)
                .map(move |(key, value)| json!({ "key": key, "value": value, "timestamp": timestamp, "step": step }))
        })
        .collect();
    server.log_batch(&sent.run_id, "metrics", metrics, METRICS_PER_BATCH)?;
    sent.epochs = rows.len();
    sent.write(dir)
}

/// The test metrics and intervals, the artifacts, and the run's end.
fn finish(server: &Server, sent: &mut Sent, dir: &Path, status: &Status) -> Result<(), MlflowError> {
    if !sent.results && status.state == State::Done {
        let step = i64::from(status.evaluated_epoch.unwrap_or(0));
        let timestamp = now_ms();
        let mut metrics: Vec<Value> = Vec::new();
        let mut add = |key: String, value: f64| {
            if value.is_finite() {
                metrics.push(json!({ "key": key, "value": value, "timestamp": timestamp, "step": step }));
            }
        };
        for (metric, value) in &status.test {
            add(format!("test_{metric}"), *value);
        }
        for (metric, interval) in &status.test_intervals {
            add(format!("test_{metric}_lower"), interval.lower);
            add(format!("test_{metric}_upper"), interval.upper);
        }
        server.log_batch(&sent.run_id, "metrics", metrics, METRICS_PER_BATCH)?;
        sent.results = true;
        sent.write(dir)?;
    }
    let report = dir.parent().map(|recipe| recipe.join("report.html"));
    // a file changed since it was sent (a resumed run's metrics, the report) goes again;
    // an artifact that cannot go does not keep MLflow from hearing how the run ended
    let mut not_uploaded = None;
    let files = ARTIFACTS
        .iter()
        .map(|name| (dir.join(name), name.to_string()))
        .chain(report.map(|r| (r, "report.html".into())));
    for (path, name) in files {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let Some(modified) = modified.and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok()) else { continue };
        if sent.artifacts.get(&name) == Some(&modified.as_nanos()) {
            continue;
        }
        match server.upload(&sent.artifact_uri, &path, &name) {
            Ok(()) => {
                sent.artifacts.insert(name, modified.as_nanos());
                sent.write(dir)?;
            }
            Err(e) => not_uploaded = Some(e),
        }
    }
    let state = status.state.name().to_string();
    if sent.ended.as_deref() != Some(state.as_str()) {
        // the tags again: the dataset's fingerprint is known once the data was read
        server.log_batch(&sent.run_id, "tags", tags(dir, status), PARAMS_PER_BATCH)?;
        let mlflow_status = match status.state {
            State::Done => "FINISHED",
            State::Interrupted => "KILLED",
            _ => "FAILED",
        };
        server.call(
            "POST",
            "runs/update",
            &json!({ "run_id": sent.run_id, "status": mlflow_status, "end_time": now_ms() }),
        )?;
        sent.ended = Some(state);
        sent.write(dir)?;
    }
    not_uploaded.map_or(Ok(()), Err)
}

/// The resolved recipe (`recipe.toml`) as flattened params: a table's keys dotted, the
/// tables of a list numbered (`train.phases.0.epochs = "15"`), other values as TOML
/// writes them (`data.image_size = "[64, 64]"`).
fn params(dir: &Path) -> Result<Vec<Value>, MlflowError> {
    let path = dir.join("recipe.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| MlflowError::Folder { path: path.clone(), why: e.to_string() })?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| MlflowError::Folder { path, why: e.to_string() })?;
    let mut flat = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut flat);
    // MLflow takes letters, digits and `_-. :/` in a key: a class name in a key (class
    // weights) may hold others
    let key = |k: String| -> String {
        k.chars().map(|c| if c.is_alphanumeric() || "_-. :/".contains(c) { c } else { '_' }).collect()
    };
    Ok(flat.into_iter().map(|(k, value)| json!({ "key": key(k), "value": value })).collect())
}

fn flatten(prefix: &str, value: &toml::Value, into: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&dotted, value, into);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) && !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), item, into);
            }
        }
        toml::Value::String(text) => {
            into.insert(prefix.to_string(), text.chars().take(LONGEST_PARAM).collect());
        }
        other => {
            into.insert(prefix.to_string(), other.to_string().chars().take(LONGEST_PARAM).collect());
        }
    }
}

/// The run's tags: its id (also MLflow's run name), recipe, fold and seed, radrun's
/// commit and the dataset's fingerprint.
fn tags(dir: &Path, status: &Status) -> Vec<Value> {
    let recipe: Option<toml::Table> =
        std::fs::read_to_string(dir.join("recipe.toml")).ok().and_then(|t| t.parse().ok());
    let key = |section: &str, key: &str| {
        recipe.as_ref().and_then(|r| r.get(section)?.get(key)).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let dataset = status.provenance.dataset.as_ref().map(|d| d.sha256.clone());
    [
        ("mlflow.runName", Some(status.run_id.clone())),
        ("mlflow.source.name", Some("radrun".to_string())),
        ("radrun.run_id", Some(status.run_id.clone())),
        ("radrun.recipe", Some(radrun_data::paths::path_text(&status.recipe_file))),
        ("radrun.fold", key("split", "fold")),
        ("radrun.seed", key("train", "seed")),
        ("radrun.commit", status.provenance.radrun_commit.clone()),
        ("radrun.version", Some(status.radrun_version.clone())),
        ("radrun.dataset_sha256", dataset),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some(json!({ "key": key, "value": value? })))
    .collect()
}

/// Syncs the run folders it is given on a thread of its own, retrying with back-off
/// (1 s doubling to 30 s) while the server is down or slow: training only hands it
/// folders and never waits.
pub struct Tracker {
    /// The tracking server's URI and the experiment.
    pub uri: String,
    pub experiment: String,
    sender: Option<mpsc::Sender<PathBuf>>,
    thread: Option<std::thread::JoinHandle<Vec<(PathBuf, String)>>>,
}

impl Tracker {
    /// A tracker of `uri`'s `experiment` that, once [`Tracker::finish`] is called, keeps
    /// trying for `grace`.
    pub fn start(uri: String, experiment: String, grace: Duration) -> Tracker {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || keep_syncing(&receiver, grace))
            .expect("a thread starts");
        Tracker { uri, experiment, sender: Some(sender), thread: Some(thread) }
    }

    /// Starts tracking the run folder `dir`, which goes on from `resumed_epochs` epochs,
    /// and sends it.
    pub fn track(&self, dir: &Path, resumed_epochs: usize) -> Result<(), MlflowError> {
        Sent::start(dir, &self.uri, &self.experiment, resumed_epochs)?;
        self.send(dir);
        Ok(())
    }

    /// Sends `dir`'s news when the server can take them.
    pub fn send(&self, dir: &Path) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(dir.to_path_buf());
        }
    }

    /// Waits (at most the grace) for what is pending; the folders left unsent, each with
    /// the last error.
    pub fn finish(mut self) -> Vec<(PathBuf, String)> {
        self.sender.take();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

fn keep_syncing(receiver: &mpsc::Receiver<PathBuf>, grace: Duration) -> Vec<(PathBuf, String)> {
    let mut pending: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut given_up: Vec<(PathBuf, String)> = Vec::new();
    let mut wait = Duration::from_secs(1);
    let mut deadline: Option<Instant> = None;
    loop {
        match deadline {
            // training goes on: wait for news, or retry what failed after `wait`
            None => {
                let message = if pending.is_empty() {
                    receiver.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                } else {
                    receiver.recv_timeout(wait)
                };
                match message {
                    Ok(dir) => {
                        pending.insert(dir, String::new());
                        pending.extend(receiver.try_iter().map(|dir| (dir, String::new())));
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => deadline = Some(Instant::now() + grace),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
            // radrun is ending: retry until the grace is over
            Some(_) if wait > Duration::ZERO => std::thread::sleep(wait),
            Some(_) => {}
        }
        let mut failed = false;
        let mut sent = Vec::new();
        for (dir, error) in pending.iter_mut() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match sync(dir) {
                Ok(()) => sent.push(dir.clone()),
                Err(e @ MlflowError::Rejected { .. }) => {
                    given_up.push((dir.clone(), e.to_string()));
                    sent.push(dir.clone());
                }
                Err(e) => {
                    *error = e.to_string();
                    failed = true;
                }
            }
        }
        for dir in sent {
            pending.remove(&dir);
        }
        wait = if failed { (wait * 2).min(Duration::from_secs(30)) } else { Duration::from_secs(1) };
        if let Some(d) = deadline {
            if pending.is_empty() || Instant::now() >= d {
                let untried = |(dir, error): (PathBuf, String)| {
                    (dir, if error.is_empty() { "not tried before radrun ended".into() } else { error })
                };
                return given_up.into_iter().chain(pending.into_iter().map(untried)).collect();
            }
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
    }
}
