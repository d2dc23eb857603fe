//! `report.html` of a recipe's runs folder: one self-contained page (styles, script,
//! charts and images inline; a content security policy forbids any request) with the
//! recipe, the data, the sweep table, metric-by-value views, the external validations
//! (`external`), and per run its curves, confusion matrix, ROC curves, per-class table,
//! gallery with Grad-CAM, or segmentation overlays. Built from the folder alone (`plan.json`, `summary.csv`,
//! `aggregate.csv` and each run's files), so it works on a partial sweep, while runs
//! are going, and on another machine. `gallery` draws each classification run's test
//! images with their Grad-CAM maps into its run folder, once the run is evaluated.
//!
//! May import: `store` (what it reads) and `recipe` (the plan it records); nothing of
//! `run`, `cluster` or `commands`, which call it.

mod charts;
mod external;
mod methods;
mod page;
mod subgroups;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::paths::distinct_stems;
use serde::{Deserialize, Serialize};

use crate::recipe::plan::Plan;
use crate::store::{RunDir, Status, WriteError, write_atomic_with};
use charts::{Marker, Series};
pub use methods::write_methods;
pub use page::escape;

/// What the report needs of the plan, written as `plan.json` beside `summary.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRecord {
    pub recipe_name: String,
    #[serde(serialize_with = "radrun_data::paths::serialize_path")]
    pub recipe_file: PathBuf,
    /// The recipe as written, and the `--set` flags given with it.
    pub recipe_text: String,
    pub set_flags: Vec<String>,
    pub swept_keys: Vec<String>,
    /// Each run's id and swept values, in plan order.
    pub runs: Vec<(String, Vec<String>)>,
    /// `[report] gallery`: images per run in galleries and overlay lists.
    pub gallery: usize,
}

impl PlanRecord {
    pub fn new(plan: &Plan) -> Self {
        Self {
            recipe_name: plan.recipe_name.clone(),
            recipe_file: plan.recipe_path.clone(),
            recipe_text: plan.recipe_text().to_string(),
            set_flags: plan.set_flags(),
            swept_keys: plan.swept_keys.clone(),
            runs: plan
                .runs
                .iter()
                .map(|r| (r.id.clone(), r.swept.iter().map(|(_, v)| crate::recipe::plan::display_value(v)).collect()))
                .collect(),
            gallery: plan.report.gallery,
        }
    }

    /// The plan.json of a recipe's runs folder.
    pub fn read(folder: &Path) -> Result<Self, ReportError> {
        let path = folder.join("plan.json");
        let text = std::fs::read(&path).map_err(|_| ReportError::NotARunsFolder { folder: folder.to_path_buf() })?;
        serde_json::from_slice(&text).map_err(|e| ReportError::Unreadable { path, message: e.to_string() })
    }
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{} has no plan.json, so it is not a recipe's runs folder written by this radrun: give \
         runs/<recipe name>, after `radrun RECIPE` (or `radrun status RECIPE`) has run",
        radrun_data::paths::path_text(folder)
    )]
    NotARunsFolder { folder: PathBuf },
    #[error("{}: {message}", radrun_data::paths::path_text(path))]
    Unreadable { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A CSV file: header and rows, with the apostrophe radrun puts before formula-like
/// cells taken off again.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(path: &Path) -> Option<Table> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).ok()?;
        let plain = |s: &str| crate::store::read_cell(s).to_string();
        let header: Vec<String> = reader.headers().ok()?.iter().map(plain).collect();
        // a short row (a file cut off or edited by hand) is padded: every column indexes
        let rows = reader
            .records()
            .filter_map(Result::ok)
            .map(|r| {
                let mut row: Vec<String> = r.iter().map(plain).collect();
                row.resize(row.len().max(header.len()), String::new());
                row
            })
            .collect();
        Some(Table { header, rows })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// A numeric column (NaN where empty or not a number).
    fn numbers(&self, name: &str) -> Option<Vec<f64>> {
        let c = self.column(name)?;
        Some(self.rows.iter().map(|r| r.get(c).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)).collect())
    }
}

/// Writes `folder/report.html` (atomically) and returns its path.
pub fn write_report(folder: &Path) -> Result<PathBuf, ReportError> {
    let plan = PlanRecord::read(folder)?;
    let html = render(folder, &plan);
    let path = folder.join("report.html");
    write_atomic_with(&path, |tmp| std::fs::write(tmp, html.as_bytes()))?;
    Ok(path)
}

/// One run as the report sees it.
struct RunView<'a> {
    id: &'a str,
    values: &'a [String],
    dir: RunDir,
    status: Option<Status>,
}

fn render(folder: &Path, plan: &PlanRecord) -> String {
    let runs: Vec<RunView> = plan
        .runs
        .iter()
        .map(|(id, values)| {
            let dir = RunDir::new(folder.join(id));
            let status = dir.status();
            RunView { id, values, dir, status }
        })
        .collect();
    let mut body = String::new();
    body += &page::header(plan, &runs.iter().map(|r| r.status.as_ref()).collect::<Vec<_>>());
    body += &page::section("recipe", "Recipe", &page::recipe(plan));
    if let Some(summary) = runs.iter().find_map(|r| std::fs::read_to_string(r.dir.path().join("data_summary.txt")).ok())
    {
        body += &page::section("data", "Data", &format!("<pre>{}</pre>", escape(&summary)));
    }
    if let Some(table) = Table::read(&folder.join("summary.csv")) {
        let best = runs
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.state == crate::store::State::Done))
            .min_by(|a, b| val_loss(a).total_cmp(&val_loss(b)))
            .map(|r| r.id);
        let intro = "<p>Ranked by validation loss (the test set never chooses the model); click a column to \
                     sort by it. The best run is highlighted.</p>";
        body +=
            &page::section("runs", "Runs", &format!("{intro}{}", page::table(&table, "runs-table", "run_id", best)));
    }
    if !plan.swept_keys.is_empty() {
        body += &page::section("by-value", "Metrics by swept value", &by_value(plan, &runs));
    }
    if let Some(table) = Table::read(&folder.join("aggregate.csv"))
        && plan.swept_keys.iter().any(|k| crate::store::aggregate::REPEAT_KEYS.contains(&k.as_str()))
    {
        let intro = "<p>Each configuration over its folds and seeds: mean, SD, min and max of each metric.</p>";
        body += &page::section(
            "aggregate",
            "Over folds and seeds",
            &format!("{intro}{}", page::table(&table, "aggregate-table", "", None)),
        );
    }
    body += &external::section(folder);
    for run in &runs {
        body += &run_section(plan, run);
    }
    page::document(&plan.recipe_name, &body)
}

/// aggregate.csv, summary.md and summary.tex (see `store::aggregate`), methods.md,
/// methods.tex and claim.md (`methods`) and the report of a recipe's runs `folder`
/// written again from its plan.json and run folders: after `radrun evaluate` has added
/// an external set. Returns the report's path.
pub fn rewrite_tables(folder: &Path, confidence: f64) -> Result<PathBuf, ReportError> {
    let plan = PlanRecord::read(folder)?;
    let runs: Vec<(String, Vec<String>, Option<Status>)> = plan
        .runs
        .iter()
        .map(|(id, values)| (id.clone(), values.clone(), RunDir::new(folder.join(id)).status()))
        .collect();
    crate::store::aggregate::write_aggregates(folder, &plan.recipe_name, &plan.swept_keys, &runs, confidence)?;
    let report = write_report(folder)?;
    // the methods follow the records; a recipe they cannot describe yet keeps the rest
    if let Err(e) = write_methods(folder) {
        tracing::warn!("methods.md not written: {e}");
    }
    Ok(report)
}

fn val_loss(run: &RunView) -> f64 {
    run.status.as_ref().and_then(|s| s.validation.get("val_loss").copied()).unwrap_or(f64::INFINITY)
}

/// For each swept key: validation loss and the first test metric of every done run
/// against the key's values.
fn by_value(plan: &PlanRecord, runs: &[RunView]) -> String {
    // Dice where the runs segment, else the first metric by name
    let first_test = runs.iter().find_map(|r| {
        let test = &r.status.as_ref()?.test;
        test.get_key_value("dice_mean").or_else(|| test.iter().next()).map(|(k, _)| k.clone())
    });
    let mut out = String::from("<div class=\"multiples\">");
    // None: the validation loss; Some(key): that test metric
    let metrics: Vec<Option<String>> = std::iter::once(None).chain(first_test.map(Some)).collect();
    for metric in &metrics {
        let name = metric.as_ref().map_or("val_loss".to_string(), |k| format!("test {k}"));
        let pick = |s: &Status| match metric {
            None => s.validation.get("val_loss").copied(),
            Some(k) => s.test.get(k).copied(),
        };
        for (k, key) in plan.swept_keys.iter().enumerate() {
            let mut categories: Vec<String> = Vec::new();
            let mut points = Vec::new();
            for run in runs {
                let Some(value) = run.values.get(k) else { continue };
                let c = categories.iter().position(|v| v == value).unwrap_or_else(|| {
                    categories.push(value.clone());
                    categories.len() - 1
                });
                if let Some(v) = run.status.as_ref().filter(|s| s.state == crate::store::State::Done).and_then(pick) {
                    points.push((c, v));
                }
            }
            let svg = charts::by_value(key, &name, &categories, &points);
            out += &charts::img(&svg, &escape(&format!("{name} by {key}")), "chart small");
        }
    }
    out + "</div>"
}

fn run_section(plan: &PlanRecord, run: &RunView) -> String {
    let mut out =
        format!("<section class=\"run\" id=\"{}\"><h2>Run {}</h2>", escape(&page::anchor(run.id)), escape(run.id));
    out += &page::run_facts(plan, run.values, run.status.as_ref());
    let dir = run.dir.path();
    if let Some(metrics) = Table::read(&dir.join("metrics.csv")) {
        out += &curves(&metrics, run.status.as_ref().and_then(|s| s.evaluated_epoch));
    }
    out += &test_views(dir);
    if let Some(gallery) = Table::read(&dir.join("gallery.csv")) {
        out += &page::gallery(dir, &gallery);
    }
    if let Some(scores) = Table::read(&dir.join("segmentation_metrics.csv")) {
        out += &segmentation(dir, &scores, plan.gallery);
    }
    if let Some(scores) = Table::read(&dir.join("volume_metrics.csv")) {
        out += &segmentation(dir, &scores, plan.gallery);
        let title = "Per test case and label (distances in mm, volumes in mL)";
        out += &format!("<h3>{title}</h3>{}", page::table(&scores, "", "", None));
    }
    out + "</section>"
}

/// What a folder's test evaluation files show (a run's, or an external set's): the
/// confusion matrix, ROC curves, reliability diagram, calibration table, decision curve,
/// per-class (per-label) table and subgroups, each where its file is.
fn test_views(dir: &Path) -> String {
    let mut out = String::new();
    if let Some(table) = Table::read(&dir.join("confusion_matrix.csv")) {
        out += "<h3>Confusion matrix (test)</h3>";
        out += &confusion(&table);
    }
    if let Some(predictions) = Table::read(&dir.join("predictions.csv")) {
        out += &roc(&predictions);
    }
    if let Some(bins) = Table::read(&dir.join("reliability.csv")) {
        out += &reliability(&bins);
    }
    if let Some(table) = Table::read(&dir.join("calibration.csv")) {
        out += &format!("<h3>Calibration (test)</h3>{}", page::table(&table, "", "", None));
    }
    if let Some(curve) = Table::read(&dir.join("decision_curve.csv")) {
        out += &decision_curve(&curve);
    }
    for (file, title) in [("per_class.csv", "Per class (test)"), ("per_label.csv", "Per label (test)")] {
        if let Some(table) = Table::read(&dir.join(file)) {
            out += &format!("<h3>{title}</h3>{}", page::table(&table, "", "", None));
        }
    }
    out + &subgroups::subgroup_view(dir)
}

/// Loss, accuracy (or Dice) and learning-rate curves, with phase boundaries and the
/// evaluated epoch marked.
fn curves(metrics: &Table, evaluated: Option<u32>) -> String {
    let Some(epochs) = metrics.numbers("epoch") else { return String::new() };
    let mut markers = Vec::new();
    if let Some(c) = metrics.column("phase") {
        for (i, row) in metrics.rows.iter().enumerate() {
            if i == 0 || metrics.rows[i - 1][c] != row[c] {
                markers.push(Marker { x: epochs[i] - 0.5, label: row[c].clone() });
            }
        }
    }
    if let Some(e) = evaluated {
        markers.push(Marker { x: e as f64, label: format!("evaluated ({e})") });
    }
    let series = |names: &[(&'static str, &'static str)]| -> Vec<Series> {
        names
            .iter()
            .filter_map(|&(column, name)| {
                let values = metrics.numbers(column)?;
                Some(Series::line(
                    name.to_string(),
                    epochs.iter().copied().zip(values).collect(),
                    column.starts_with("val_"),
                ))
            })
            .collect()
    };
    let mut out = String::from("<h3>Training</h3><div class=\"charts\">");
    // title, y axis, (column, line name) pairs, whether the scale is 0 to 1
    type Chart<'a> = (&'a str, &'a str, Vec<(&'static str, &'static str)>, bool);
    let charts: [Chart; 4] = [
        ("Loss", "loss", vec![("train_loss", "train"), ("val_loss", "validation")], false),
        ("Accuracy", "accuracy", vec![("train_accuracy", "train"), ("val_accuracy", "validation")], true),
        ("Dice and IoU (validation)", "score", vec![("val_dice", "Dice"), ("val_iou", "IoU")], true),
        ("Learning rate", "learning rate", vec![("lr", "learning rate")], false),
    ];
    for (title, y, names, unit) in charts {
        let s = series(&names);
        if s.iter().any(|s| s.points.iter().any(|p| p.1.is_finite())) {
            let svg = charts::lines(title, "epoch", y, &s, &markers, unit);
            out += &charts::img(&svg, title, "chart");
        }
    }
    out + "</div>"
}

fn confusion(table: &Table) -> String {
    let classes: Vec<String> = table.header.iter().skip(1).cloned().collect();
    let counts: Vec<Vec<u64>> =
        table.rows.iter().map(|r| r.iter().skip(1).map(|v| v.parse().unwrap_or(0)).collect()).collect();
    let svg = charts::confusion("rows: true class, columns: predicted", &classes, &counts);
    charts::img(&svg, "confusion matrix", "chart wide")
}

/// The ROC curve of each class (one against the rest) or label (present or not), with
/// its AUC; nothing for a predictions file of neither (segmentation).
fn roc(predictions: &Table) -> String {
    // whether a row's truth holds the class: its `true_class`, or one of its `true_labels`
    let (truth, multilabel) = match (predictions.column("true_class"), predictions.column("true_labels")) {
        (Some(c), _) => (c, false),
        (None, Some(c)) => (c, true),
        (None, None) => return String::new(),
    };
    let holds = |row: &[String], class: &str| {
        if multilabel { row[truth].split('|').any(|l| l == class) } else { row[truth] == class }
    };
    let classes: Vec<(usize, String)> = predictions
        .header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("p_").map(|c| (i, c.to_string())))
        .collect();
    let curves: Vec<(String, Vec<(f64, f64)>)> = classes
        .iter()
        .map(|(column, class)| {
            let scores: Vec<f64> = predictions.rows.iter().map(|r| r[*column].parse().unwrap_or(f64::NAN)).collect();
            let positive: Vec<bool> = predictions.rows.iter().map(|r| holds(r, class)).collect();
            let name = match radrun_metrics::roc_auc(&scores, &positive) {
                Some(auc) => format!("{class} (AUC {auc:.3})"),
                None => format!("{class} (no AUC: one kind only)"),
            };
            (name, roc_points(&scores, &positive))
        })
        .collect();
    let series: Vec<Series> = curves.into_iter().map(|(name, points)| Series::line(name, points, false)).collect();
    let title = if multilabel { "ROC of each label (test)" } else { "ROC, one class against the rest (test)" };
    let svg = charts::lines(title, "1 - specificity", "sensitivity", &series, &[], true);
    format!("<h3>ROC curves (test)</h3>{}", charts::img(&svg, "ROC curves", "chart"))
}

/// The rows of `table` per value of its `class` column (and of its `probabilities`
/// column: temperature-scaled ones named so), in the order they first appear.
fn by_class(table: &Table) -> Vec<(String, Vec<&Vec<String>>)> {
    let Some(c) = table.column("class") else { return Vec::new() };
    let scale = table.column("probabilities");
    let mut groups: Vec<(String, Vec<&Vec<String>>)> = Vec::new();
    for row in &table.rows {
        let name = match scale.map(|s| row[s].as_str()) {
            Some("calibrated") => format!("{} (calibrated)", row[c]),
            _ => row[c].clone(),
        };
        match groups.iter_mut().find(|(group, _)| *group == name) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((name, vec![row])),
        }
    }
    groups
}

/// A cell of `row` in `column` as a number (NaN where empty).
fn cell(table: &Table, row: &[String], column: &str) -> f64 {
    table.column(column).and_then(|c| row.get(c)).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// The reliability diagram: the share of each bin's images that hold the class against
/// their mean probability, per calibrated class, and the diagonal of perfect calibration.
fn reliability(bins: &Table) -> String {
    let mut series = vec![Series::line("perfect calibration".into(), vec![(0.0, 0.0), (1.0, 1.0)], true)];
    for (class, rows) in by_class(bins) {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (cell(bins, r, "mean_predicted"), cell(bins, r, "observed")))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        series.push(Series::line(class, points, false));
    }
    let svg = charts::lines(
        "Reliability (15 equal-width bins)",
        "mean predicted probability",
        "observed share",
        &series,
        &[],
        true,
    );
    format!("<h3>Reliability diagram (test)</h3>{}", charts::img(&svg, "reliability diagram", "chart"))
}

/// Net benefit below this is left off the decision curve's chart (calling every image
/// positive falls without bound as the threshold nears 1), as dcurves' plots do.
const NET_BENEFIT_FLOOR: f64 = -0.05;

/// The decision curve of each class or label with its interval, against calling every
/// image positive and none.
fn decision_curve(curve: &Table) -> String {
    let mut series = Vec::new();
    for (class, rows) in by_class(curve) {
        let point = |r: &&Vec<String>, column: &str| (cell(curve, r, "threshold"), cell(curve, r, column));
        let kept = |(t, v): (f64, f64)| (v >= NET_BENEFIT_FLOOR).then_some((t, v));
        let band = rows
            .iter()
            .map(|r| (cell(curve, r, "threshold"), cell(curve, r, "lower"), cell(curve, r, "upper")))
            .filter(|b| b.1.is_finite() && b.2 >= NET_BENEFIT_FLOOR)
            .map(|(t, lower, upper)| (t, lower.max(NET_BENEFIT_FLOOR), upper))
            .collect();
        let points = rows.iter().filter_map(|r| kept(point(r, "net_benefit"))).collect();
        series.push(Series { name: format!("{class}: the model"), points, dashed: false, band });
        // calling every image positive does not depend on the probabilities' scale
        if !class.ends_with("(calibrated)") {
            let all = rows.iter().filter_map(|r| kept(point(r, "treat_all"))).collect();
            series.push(Series::line(format!("{class}: call all positive"), all, true));
        }
    }
    let thresholds = curve.numbers("threshold").unwrap_or_default();
    let none = thresholds.iter().map(|&t| (t, 0.0)).collect();
    series.push(Series::line("call none positive".into(), none, true));
    let svg = charts::lines("Decision curve (test)", "threshold probability", "net benefit", &series, &[], false);
    format!("<h3>Decision curve (test)</h3>{}", charts::img(&svg, "decision curve", "chart"))
}

/// The ROC curve's corners: (false positive rate, true positive rate) from the highest
/// threshold down, tied scores taken together.
pub fn roc_points(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let p = positive.iter().filter(|&&t| t).count() as f64;
    let n = positive.len() as f64 - p;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push((if n > 0.0 { fp / n } else { 0.0 }, if p > 0.0 { tp / p } else { 0.0 }));
        }
    }
    points
}

/// The Dice distribution and the overlays of the worst images first.
fn segmentation(dir: &Path, scores: &Table, n: usize) -> String {
    // images (segmentation_metrics.csv: file, overlays) or volumes (volume_metrics.csv:
    // case, three slices through its smallest structure)
    let (unit, picture, file) = match scores.column("file") {
        Some(file) => ("image", "_overlay.png", Some(file)),
        None => ("case", "_slices.png", scores.column("case")),
    };
    let (Some(file), Some(label), Some(dice)) = (file, scores.column("label"), scores.column("dice")) else {
        return String::new();
    };
    let values: Vec<f64> = scores.rows.iter().map(|r| r[dice].parse().unwrap_or(f64::NAN)).collect();
    let mut out = String::from("<h3>Segmentation (test)</h3><div class=\"charts\">");
    let title = format!("Dice per {unit} and label");
    out += &charts::img(&charts::histogram(&title, "Dice", &values, 20), "Dice distribution", "chart");
    out += match unit {
        "image" => "</div><p>Overlays, worst Dice first: truth green, prediction magenta, both white.</p>",
        _ => {
            "</div><p>Axial, coronal and sagittal slices through each case's smallest structure, worst Dice \
             first, on the working grid in radiological convention: reference outlines green, prediction \
             magenta, both white.</p>"
        }
    };
    out += "<div class=\"gallery\">";
    let mut order: Vec<usize> = (0..scores.rows.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut shown = 0;
    let mut seen = std::collections::HashSet::new();
    // the names the overlays were written under: each image's distinct stem
    let mut listed = std::collections::HashSet::new();
    let files: Vec<&str> = scores.rows.iter().map(|r| r[file].as_str()).filter(|f| listed.insert(*f)).collect();
    let paths: Vec<&Path> = files.iter().map(Path::new).collect();
    let stems: std::collections::HashMap<&str, String> = files.iter().copied().zip(distinct_stems(&paths)).collect();
    for i in order {
        let row = &scores.rows[i];
        let stem = match unit {
            "image" => stems.get(row[file].as_str()).cloned().unwrap_or_default(),
            _ => row[file].clone(),
        };
        if shown >= n || !seen.insert(stem.clone()) {
            continue;
        }
        let overlay = dir.join("predictions").join(format!("{stem}{picture}"));
        if let Some(uri) = page::png_uri(&overlay) {
            let caption =
                format!("{} · {}: Dice {}", page::file_name(&row[file]), row[label], page::number(&row[dice]));
            out += &format!(
                "<figure><img class=\"thumb\" alt=\"{0}\" src=\"{uri}\"><figcaption>{0}</figcaption></figure>",
                escape(&caption)
            );
            shown += 1;
        }
    }
    out + "</div>"
}

/// How many runs are in each state (pending when a run has no status yet), for the header.
fn done_count(statuses: &[Option<&Status>]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for s in statuses {
        *counts.entry(s.map_or("pending", |s| s.state.name())).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_points_step_through_the_thresholds_with_ties_together() {
        // scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.1 (neg)
        let points = roc_points(&[0.9, 0.8, 0.8, 0.1], &[true, false, true, false]);
        assert_eq!(points, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn tables_take_off_the_formula_guard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,b\n'=x,-1\n'plain,2\nshort\n").unwrap();
        let t = Table::read(&path).unwrap();
        assert_eq!(t.rows, vec![vec!["=x", "-1"], vec!["'plain", "2"], vec!["short", ""]]);
        assert_eq!(t.numbers("b").unwrap()[1], 2.0);
    }
}
