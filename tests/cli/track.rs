//! `[track]`: what TensorBoard's own reader (`EventAccumulator`, PyPI `tensorboard`)
//! finds in a run's event files, compared with the run folder.

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
