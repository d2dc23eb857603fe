//! What a manuscript reports beyond the internal test metrics: the calibration of the
//! probabilities (Brier score, ECE, calibration slope and intercept, the reliability
//! diagram) and decision curves, each recomputed here from the run's own predictions.

use crate::common::{Project, TINY, only_run, stderr};

/// The rows of a CSV file as maps from column name to cell.
fn table(path: &std::path::Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| header.iter().map(str::to_string).zip(r.unwrap().iter().map(str::to_string)).collect())
        .collect()
}

fn number(row: &std::collections::BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| panic!("{column} = {:?} is not a number", row[column]))
}

#[test]
fn a_two_class_run_writes_its_calibration_and_decision_curve_from_its_predictions() {
    let p = Project::two_classes(3);
    let recipe = format!("{TINY}\n[eval]\ndecision_curve = {{ from = 0.05, to = 0.95, step = 0.05 }}\n");
    let name = p.recipe("binary.toml", &recipe);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "binary");
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("operating_point.json")).unwrap()).unwrap();
    let positive = point["positive_class"].as_str().unwrap().to_string();
    // each test image's positive-class probability as radrun holds it (an f32, written
    // exactly), and whether it is of that class
    let predictions = table(&run.join("predictions.csv"));
    let probability: Vec<f64> =
        predictions.iter().map(|r| f64::from(r[&format!("p_{positive}")].parse::<f32>().unwrap())).collect();
    let holds: Vec<bool> = predictions.iter().map(|r| r["true_class"] == positive).collect();
    let n = probability.len() as f64;
    assert_eq!(n, 4.0, "two test images of each class");

    let calibration = table(&run.join("calibration.csv"));
    assert_eq!(calibration.len(), 1, "the positive class only: {calibration:?}");
    assert_eq!(calibration[0]["probabilities"], "raw", "without eval.calibrate, the network's only");
    let row = &calibration[0];
    assert_eq!(
        (row["class"].as_str(), row["images"].as_str(), row["positives"].as_str()),
        (positive.as_str(), "4", "2")
    );
    let brier = probability.iter().zip(&holds).map(|(p, &h)| (p - f64::from(u8::from(h))).powi(2)).sum::<f64>() / n;
    assert!((number(row, "brier") - brier).abs() < 1e-12, "{row:?} vs {brier}");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert!((status["test"]["brier"].as_f64().unwrap() - brier).abs() < 1e-12, "{}", status["test"]);
    let intervals = table(&run.join("intervals.csv"));
    let interval = intervals.iter().find(|r| r["metric"] == "brier").expect("the Brier score's interval");
    assert!(number(interval, "lower") <= brier && brier <= number(interval, "upper"), "{interval:?}");

    let bins = table(&run.join("reliability.csv"));
    assert_eq!(bins.len(), 15);
    assert_eq!(bins.iter().map(|b| number(b, "images")).sum::<f64>(), 4.0);

    // net benefit by hand: images at or above the threshold called positive
    let curve = table(&run.join("decision_curve.csv"));
    assert_eq!(curve.len(), 19, "0.05 to 0.95 by 0.05");
    for (k, row) in curve.iter().enumerate() {
        let t = number(row, "threshold");
        assert!((t - 0.05 * (k + 1) as f64).abs() < 1e-12, "{row:?}");
        let called = |truth: bool| probability.iter().zip(&holds).filter(|(p, h)| **p >= t && **h == truth).count();
        let benefit = called(true) as f64 / n - called(false) as f64 / n * t / (1.0 - t);
        assert!((number(row, "net_benefit") - benefit).abs() < 1e-12, "{row:?} vs {benefit}");
        assert!((number(row, "treat_all") - (0.5 - 0.5 * t / (1.0 - t))).abs() < 1e-12, "{row:?}");
    }

    let report = p.run(&["report", "runs/binary"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(p.path().join("runs/binary/report.html")).unwrap();
    for section in ["Reliability diagram (test)", "Calibration (test)", "Decision curve (test)"] {
        assert!(html.contains(section), "the report has no {section:?}");
    }
}
