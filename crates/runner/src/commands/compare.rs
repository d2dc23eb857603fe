//! `radrun compare RUN_A RUN_B`: do two classification runs differ on the same test
//! images? For accuracy, balanced accuracy, macro F1 and macro AUC, the difference A - B
//! with a paired bootstrap interval and p-value (both runs scored on the same resamples
//! of patients, or of images when the groups are unknown), and DeLong's test of each
//! class's two correlated AUCs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use radrun_metrics::stats::{Bootstrap, DelongComparison, Interval, units_by_group};
use radrun_metrics::{ClassificationReport, classification_report, percentile};
use serde::Serialize;

use super::usage_error;
use crate::cli::CompareArgs;
use crate::error::RadrunError;
use crate::store::read_cell;

/// One run's test predictions, as its predictions.csv and split.csv give them.
struct Predictions {
    classes: Vec<String>,
    files: Vec<String>,
    truth: Vec<usize>,
    probabilities: Vec<Vec<f32>>,
    /// file -> salted group hash, from split.csv.
    groups: HashMap<String, String>,
}

fn read_predictions(run: &Path) -> Result<Predictions, RadrunError> {
    let path = run.join("predictions.csv");
    let bad = |message: String| usage_error(&path, message);
    let mut reader = csv::Reader::from_path(&path).map_err(|e| {
        bad(format!(
            "cannot be read ({e}); give the folder of a finished classification run, e.g. runs/<recipe>/<run id>"
        ))
    })?;
    let header: Vec<String> = reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
    let classes: Vec<String> = header.iter().filter_map(|h| h.strip_prefix("p_")).map(str::to_string).collect();
    if header.len() < 4 || header[..3] != ["file", "true_class", "predicted_class"] || classes.len() + 3 != header.len()
    {
        return Err(bad(
            "is not a radrun predictions file (columns file, true_class, predicted_class, p_<class>...)".into()
        ));
    }
    let (mut files, mut truth, mut probabilities) = (Vec::new(), Vec::new(), Vec::new());
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("line {}: {e}", line + 2)))?;
        let class = classes
            .iter()
            .position(|c| c == read_cell(&record[1]))
            .ok_or_else(|| bad(format!("line {}: unknown class \"{}\"", line + 2, &record[1])))?;
        let p: Result<Vec<f32>, _> = record.iter().skip(3).map(str::parse).collect();
        files.push(read_cell(&record[0]).to_string());
        truth.push(class);
        probabilities.push(p.map_err(|e| bad(format!("line {}: {e}", line + 2)))?);
    }
    let mut groups = HashMap::new();
    if let Ok(mut split) = csv::Reader::from_path(run.join("split.csv")) {
        for record in split.records().flatten() {
            if let (Some(file), Some("test"), Some(group)) = (record.get(0), record.get(1), record.get(4))
                && !group.is_empty()
            {
                groups.insert(read_cell(file).to_string(), read_cell(group).to_string());
            }
        }
    }
    Ok(Predictions { classes, files, truth, probabilities, groups })
}

/// A metric of both runs and their paired difference.
#[derive(Debug, Serialize)]
struct Difference {
    metric: &'static str,
    a: f64,
    b: f64,
    difference: f64,
    interval: Option<Interval>,
    /// Two-sided: twice the share of resamples on the smaller side of 0, as (k + 1) /
    /// (n + 1), at most 1.
    p_value: Option<f64>,
}

#[derive(Debug, Serialize)]
struct AucTest {
    class: String,
    #[serde(flatten)]
    test: DelongComparison,
}

#[derive(Debug, Serialize)]
struct Comparison {
    run_a: PathBuf,
    run_b: PathBuf,
    images: usize,
    /// Units resampled: patients (groups) when known, else images.
    units: usize,
    resamples: u32,
    confidence: f64,
    differences: Vec<Difference>,
    auc_tests: Vec<AucTest>,
}

const METRICS: [&str; 4] = ["accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc"];

fn headline(r: &ClassificationReport) -> [Option<f64>; 4] {
    [Some(r.accuracy), Some(r.balanced_accuracy), Some(r.macro_avg.f1), r.macro_avg.roc_auc]
}

pub fn compare(args: &CompareArgs) -> Result<(), RadrunError> {
    if !(args.confidence > 0.5 && args.confidence < 1.0) || args.resamples == 0 {
        return Err(usage_error(
            &args.run_a,
            format!(
                "--confidence must be between 0.5 and 1 (e.g. 0.95) and --resamples at least 1, found {} and {}",
                args.confidence, args.resamples
            ),
        ));
    }
    let a = read_predictions(&args.run_a)?;
    let b = read_predictions(&args.run_b)?;
    let b_probabilities = paired(args, &a, &b)?;
    let groups: Vec<Option<&str>> = a.files.iter().map(|f| group_of(&a.groups, f)).collect();
    let units = units_by_group(&groups);
    let comparison = Comparison {
        run_a: args.run_a.clone(),
        run_b: args.run_b.clone(),
        images: a.files.len(),
        units: units.len(),
        resamples: args.resamples,
        confidence: args.confidence,
        differences: differences(args, &a, &b_probabilities, &units),
        auc_tests: auc_tests(&a, &b_probabilities),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison).expect("plain data serializes"));
    } else {
        print!("{}", render(&comparison));
    }
    Ok(())
}

/// B's probabilities in A's file order; refused unless both runs were tested on the same
/// images with the same truth and classes.
fn paired(args: &CompareArgs, a: &Predictions, b: &Predictions) -> Result<Vec<Vec<f32>>, RadrunError> {
    // B's rows in A's order; the same images with the same truth, or no comparison
    let index: HashMap<&str, usize> = b.files.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
    let same = a.classes == b.classes
        && a.files.len() == b.files.len()
        && a.files.iter().zip(&a.truth).all(|(f, t)| index.get(f.as_str()).is_some_and(|&j| b.truth[j] == *t));
    if !same {
        return Err(usage_error(
            &args.run_b,
            format!(
                "was not tested on the same images and classes as {}: compare runs of one test set",
                args.run_a.display()
            ),
        ));
    }
    let order: Vec<usize> = a.files.iter().map(|f| index[f.as_str()]).collect();
    Ok(order.iter().map(|&j| b.probabilities[j].clone()).collect())
}

/// Each headline metric of both runs and its difference A - B, with the paired bootstrap
/// interval and p-value over resamples of `units`.
fn differences(
    args: &CompareArgs,
    a: &Predictions,
    b_probabilities: &[Vec<f32>],
    units: &[Vec<usize>],
) -> Vec<Difference> {
    let report = |p: &[Vec<f32>], idx: &[usize]| {
        let t: Vec<usize> = idx.iter().map(|&i| a.truth[i]).collect();
        let p: Vec<Vec<f32>> = idx.iter().map(|&i| p[i].clone()).collect();
        classification_report(&a.classes, &t, &p)
    };
    let all: Vec<usize> = (0..a.files.len()).collect();
    let (values_a, values_b) = (headline(&report(&a.probabilities, &all)), headline(&report(b_probabilities, &all)));
    let bootstrap = Bootstrap { resamples: args.resamples, confidence: args.confidence, seed: args.seed };
    let draws = bootstrap.draws(units, |idx| {
        let (ra, rb) = (headline(&report(&a.probabilities, idx)), headline(&report(b_probabilities, idx)));
        ra.iter().zip(&rb).map(|(x, y)| Some((*x)? - (*y)?)).collect()
    });
    let tail = (1.0 - args.confidence) / 2.0 * 100.0;
    METRICS
        .iter()
        .enumerate()
        .filter_map(|(k, metric)| {
            let (va, vb) = (values_a[k]?, values_b[k]?);
            let mut d: Vec<f64> = draws.iter().filter_map(|row| row[k]).collect();
            let enough = !d.is_empty() && d.len() * 2 > draws.len();
            let below = d.iter().filter(|&&x| x <= 0.0).count();
            let above = d.iter().filter(|&&x| x >= 0.0).count();
            // (k + 1) / (n + 1): a p-value is never 0 after finitely many resamples
            let p_value = enough.then(|| (2.0 * (below.min(above) + 1) as f64 / (d.len() + 1) as f64).min(1.0));
            let interval =
                enough.then(|| Interval { lower: percentile(&mut d, tail), upper: percentile(&mut d, 100.0 - tail) });
            Some(Difference { metric, a: va, b: vb, difference: va - vb, interval, p_value })
        })
        .collect()
}

/// DeLong's test of the two runs' AUCs of each class (one vs rest), where both exist.
fn auc_tests(a: &Predictions, b_probabilities: &[Vec<f32>]) -> Vec<AucTest> {
    a.classes
        .iter()
        .enumerate()
        .filter_map(|(c, class)| {
            let positive: Vec<bool> = a.truth.iter().map(|&t| t == c).collect();
            let sa: Vec<f64> = a.probabilities.iter().map(|p| f64::from(p[c])).collect();
            let sb: Vec<f64> = b_probabilities.iter().map(|p| f64::from(p[c])).collect();
            Some(AucTest { class: class.clone(), test: DelongComparison::of(&sa, &sb, &positive)? })
        })
        .collect()
}

/// The group of a predictions.csv file (an absolute path) in split.csv's map (paths
/// relative to the dataset root): the longest trailing part of the path that is listed.
fn group_of<'a>(groups: &'a HashMap<String, String>, file: &str) -> Option<&'a str> {
    let parts: Vec<&str> = file.split(['/', '\\']).collect();
    (0..parts.len()).find_map(|start| groups.get(&parts[start..].join("/"))).map(String::as_str)
}

fn render(c: &Comparison) -> String {
    let mut out = format!(
        "A: {}\nB: {}\nSame {} test images; {} paired bootstrap resamples of {} {}; {} % intervals.\n\n",
        c.run_a.display(),
        c.run_b.display(),
        c.images,
        c.resamples,
        c.units,
        if c.units < c.images { "patients" } else { "images" },
        c.confidence * 100.0
    );
    out.push_str(&format!("  {:<18} {:>7} {:>7} {:>8}  {:<20} {:>6}\n", "metric", "A", "B", "A - B", "interval", "p"));
    for d in &c.differences {
        let interval = d.interval.map(|i| format!("({:+.3}, {:+.3})", i.lower, i.upper)).unwrap_or_default();
        let p = d.p_value.map(|p| format!("{p:.3}")).unwrap_or_default();
        out.push_str(&format!(
            "  {:<18} {:>7.3} {:>7.3} {:>+8.3}  {:<20} {:>6}\n",
            d.metric, d.a, d.b, d.difference, interval, p
        ));
    }
    if !c.auc_tests.is_empty() {
        out.push_str("\nDeLong's test of the two AUCs, per class (one vs rest):\n");
        out.push_str(&format!("  {:<18} {:>7} {:>7} {:>7} {:>6}\n", "class", "AUC A", "AUC B", "z", "p"));
        for t in &c.auc_tests {
            out.push_str(&format!(
                "  {:<18} {:>7.3} {:>7.3} {:>+7.2} {:>6.3}\n",
                t.class, t.test.auc_a, t.test.auc_b, t.test.z, t.test.p_value
            ));
        }
    }
    out
}
