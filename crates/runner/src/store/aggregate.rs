//! What a paper reports from a recipe's runs: `aggregate.csv` (for each sweep point, its
//! rank by mean validation loss, the runs over folds and seeds and the mean, SD, min and
//! max of every metric), and
//! `summary.md` / `summary.tex`, the test metrics as a manuscript prints them: one run
//! "0.912 (0.884-0.936)" with its bootstrap interval, several runs "0.912 ± 0.012"
//! (mean ± SD); and, once `radrun evaluate` has scored them on external sets, a second
//! table with each set's results beside the internal ones.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use radrun_metrics::stats::Interval;
use radrun_metrics::{Summary, summarize};

use super::external::ExternalRecord;
use super::io::{WriteError, write_atomic_with, write_csv};
use super::status::{State, Status};

/// The swept keys that repeat a configuration rather than change it.
pub const REPEAT_KEYS: [&str; 2] = ["split.fold", "train.seed"];

/// One configuration: the runs that differ only in fold and seed.
pub struct Point<'a> {
    /// The values of the other swept keys.
    pub values: Vec<String>,
    pub planned: usize,
    pub done: Vec<&'a Status>,
}

/// Groups the runs (swept values in `swept_keys` order, status) by configuration: the
/// swept keys besides fold and seed, and the configurations in plan order.
pub fn points<'a>(
    swept_keys: &[String],
    runs: &'a [(String, Vec<String>, Option<Status>)],
) -> (Vec<String>, Vec<Point<'a>>) {
    let kept: Vec<usize> = (0..swept_keys.len()).filter(|&i| !REPEAT_KEYS.contains(&swept_keys[i].as_str())).collect();
    let keys = kept.iter().map(|&i| swept_keys[i].clone()).collect();
    let mut points: Vec<Point> = Vec::new();
    for (_, values, status) in runs {
        let values: Vec<String> = kept.iter().map(|&i| values[i].clone()).collect();
        let index = match points.iter().position(|p| p.values == values) {
            Some(i) => i,
            None => {
                points.push(Point { values, planned: 0, done: Vec::new() });
                points.len() - 1
            }
        };
        points[index].planned += 1;
        if let Some(s) = status.as_ref().filter(|s| s.state == State::Done) {
            points[index].done.push(s);
        }
    }
    (keys, points)
}

/// Every metric a done run reported: validation ones as named, test ones as `test_<name>`.
fn metric(status: &Status, name: &str) -> Option<f64> {
    match name.strip_prefix("test_") {
        Some(test) => status.test.get(test).copied(),
        None => status.validation.get(name).copied(),
    }
}

/// Mean, sample SD (n - 1; 0 for one value), min and max.
fn describe(values: &[f64]) -> Option<[f64; 4]> {
    if values.is_empty() {
        return None;
    }
    let Summary { mean, sd, .. } = summarize(values);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some([mean, sd, min, max])
}

/// Writes aggregate.csv, summary.md and summary.tex into `folder`.
pub fn write_aggregates(
    folder: &Path,
    recipe_name: &str,
    swept_keys: &[String],
    runs: &[(String, Vec<String>, Option<Status>)],
    confidence: f64,
) -> Result<(), WriteError> {
    let (keys, points) = points(swept_keys, runs);
    let mut metrics: BTreeSet<String> = BTreeSet::new();
    for status in points.iter().flat_map(|p| &p.done) {
        metrics.extend(status.validation.keys().cloned());
        metrics.extend(status.test.keys().map(|k| format!("test_{k}")));
    }
    let ranks = ranks(&points);
    let mut header: Vec<String> = std::iter::once("rank".to_string()).chain(keys.iter().cloned()).collect();
    header.extend(["runs".to_string(), "planned".to_string()]);
    for m in &metrics {
        header.extend(["mean", "sd", "min", "max"].map(|s| format!("{m}_{s}")));
    }
    let rows: Vec<Vec<String>> = points
        .iter()
        .zip(&ranks)
        .map(|(p, rank)| {
            let mut row: Vec<String> = std::iter::once(rank.map(|r| r.to_string()).unwrap_or_default()).collect();
            row.extend(p.values.iter().cloned());
            row.extend([p.done.len().to_string(), p.planned.to_string()]);
            for m in &metrics {
                let values: Vec<f64> = p.done.iter().filter_map(|s| metric(s, m)).collect();
                match describe(&values) {
                    Some(stats) => row.extend(stats.map(|v| format!("{v}"))),
                    None => row.extend(std::iter::repeat_n(String::new(), 4)),
                }
            }
            row
        })
        .collect();
    write_csv(&folder.join("aggregate.csv"), &header, &rows)?;
    let table = Table::new(recipe_name, &keys, &points, &repeat_words(swept_keys, runs), confidence);
    let (mut markdown, mut latex) = (table.markdown(), table.latex());
    let externals: Vec<ExternalRecord> = ExternalRecord::all(folder).into_iter().map(|(_, r)| r).collect();
    if let Some(external) = Table::external(recipe_name, &externals, confidence) {
        markdown += &format!("\n{}", external.markdown());
        latex += &format!("\n{}", external.latex());
    }
    write_text(&folder.join("summary.md"), &markdown)?;
    write_text(&folder.join("summary.tex"), &latex)
}

/// Each configuration's rank by its mean validation loss over its done runs (1 = lowest;
/// the test set must not choose the model); none without done runs.
fn ranks(points: &[Point]) -> Vec<Option<usize>> {
    let mean_loss = |p: &Point| describe(&p.done.iter().filter_map(|s| metric(s, "val_loss")).collect::<Vec<_>>());
    let losses: Vec<Option<f64>> = points.iter().map(|p| mean_loss(p).map(|[mean, ..]| mean)).collect();
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| losses[i].is_some()).collect();
    order.sort_by(|&a, &b| losses[a].unwrap_or(f64::INFINITY).total_cmp(&losses[b].unwrap_or(f64::INFINITY)));
    let mut ranks = vec![None; points.len()];
    for (rank, i) in order.into_iter().enumerate() {
        ranks[i] = Some(rank + 1);
    }
    ranks
}

fn write_text(path: &Path, text: &str) -> Result<(), WriteError> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, text))
}

/// Headline test metrics in the order and words of a results table.
const COLUMNS: [(&str, &str); 18] = [
    ("accuracy", "Accuracy"),
    ("subset_accuracy", "Subset accuracy"),
    ("label_accuracy", "Label accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_roc_auc", "Macro AUC"),
    ("macro_f1", "Macro F1"),
    ("dice_mean", "Dice"),
    ("iou_mean", "IoU"),
    ("sensitivity_mean", "Sensitivity"),
    ("precision_mean", "Precision"),
    ("hd95_pixels_median", "HD95 (px, median)"),
    ("nsd_mean", "NSD"),
    ("hd95_mm_median", "HD95 (mm, median)"),
    ("assd_mm_median", "ASSD (mm, median)"),
    ("threshold_sensitivity", "Sensitivity at threshold"),
    ("threshold_specificity", "Specificity at threshold"),
    ("brier", "Brier score"),
    ("ece", "ECE"),
];

/// The manuscript table: a row per configuration, a cell per headline test metric.
struct Table {
    caption: String,
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

/// A table cell: plain text, or a number with its interval or spread.
enum Cell {
    Text(String),
    /// One run: value (lower-upper).
    WithInterval(f64, Option<(f64, f64)>),
    /// Several runs: mean ± SD.
    MeanSd(f64, f64),
}

impl Table {
    fn new(recipe_name: &str, keys: &[String], points: &[Point], repeats: &str, confidence: f64) -> Table {
        let present: Vec<(&str, &str)> = COLUMNS
            .into_iter()
            .filter(|(m, _)| points.iter().flat_map(|p| &p.done).any(|s| s.test.contains_key(*m)))
            .collect();
        let mut header: Vec<String> = keys.to_vec();
        header.push("Runs".into());
        header.extend(present.iter().map(|(_, title)| title.to_string()));
        let rows = points
            .iter()
            .map(|p| {
                let mut row: Vec<Cell> = p.values.iter().cloned().map(Cell::Text).collect();
                let runs = if p.done.len() == p.planned {
                    p.planned.to_string()
                } else {
                    format!("{} of {}", p.done.len(), p.planned)
                };
                row.push(Cell::Text(runs));
                for (m, _) in &present {
                    // the runs that report the metric
                    let reported: Vec<(&Status, f64)> =
                        p.done.iter().filter_map(|s| s.test.get(*m).map(|v| (*s, *v))).collect();
                    let values: Vec<f64> = reported.iter().map(|(_, v)| *v).collect();
                    row.push(match (reported.as_slice(), describe(&values)) {
                        ([], _) | (_, None) => Cell::Text("-".into()),
                        ([(status, value)], _) => {
                            let ci = status.test_intervals.get(*m).map(|i| (i.lower, i.upper));
                            Cell::WithInterval(*value, ci)
                        }
                        (_, Some([mean, sd, _, _])) => Cell::MeanSd(mean, sd),
                    });
                }
                row
            })
            .collect();
        let with_intervals = points.iter().flat_map(|p| &p.done).any(|s| !s.test_intervals.is_empty());
        let confidence =
            if with_intervals { interval_words(confidence) } else { "no interval (bootstrapping was off)".to_string() };
        let mut caption =
            format!("Test-set results of recipe {recipe_name}. A single run shows its value with {confidence}");
        if points.iter().any(|p| p.planned > 1) {
            caption.push_str(&format!("; several runs of one configuration ({repeats}) show mean ± SD across them"));
        }
        caption.push('.');
        Table { caption, header, rows }
    }

    /// The external validations: per set, the run(s)' internal test results, then the
    /// set's, each value with its interval (a mean over an ensemble's runs without).
    fn external(recipe_name: &str, records: &[ExternalRecord], confidence: f64) -> Option<Table> {
        if records.is_empty() {
            return None;
        }
        let present: Vec<(&str, &str)> =
            COLUMNS.into_iter().filter(|(m, _)| records.iter().any(|r| r.test.contains_key(*m))).collect();
        let mut header: Vec<String> = ["Test set", "Runs", "Images", "Patients"].map(String::from).to_vec();
        header.extend(present.iter().map(|(_, title)| title.to_string()));
        let cells = |values: &BTreeMap<String, f64>, intervals: &BTreeMap<String, Interval>| -> Vec<Cell> {
            let cell = |m: &str| match values.get(m) {
                Some(v) => Cell::WithInterval(*v, intervals.get(m).map(|i| (i.lower, i.upper))),
                None => Cell::Text("-".into()),
            };
            present.iter().map(|(m, _)| cell(m)).collect()
        };
        let mut rows = Vec::new();
        for r in records {
            let runs = r.runs.len().to_string();
            let mut internal = vec![Cell::Text(format!("internal test ({})", r.name)), Cell::Text(runs.clone())];
            internal.extend([Cell::Text("-".into()), Cell::Text("-".into())]);
            internal.extend(cells(&r.internal, &r.internal_intervals));
            let mut external = vec![Cell::Text(format!("external: {}", r.name)), Cell::Text(runs)];
            external.extend([Cell::Text(r.images.to_string()), Cell::Text(r.patients.to_string())]);
            external.extend(cells(&r.test, &r.test_intervals));
            rows.extend([internal, external]);
        }
        let with_intervals = records.iter().any(|r| !r.test_intervals.is_empty());
        let caption = format!(
            "External validation of recipe {recipe_name}: each external set scored by the run(s) evaluated on \
             it, with their preprocessing and the threshold and temperature they chose on their own validation \
             split (not re-tuned on the external set), beside the same run(s) on the internal test set. {}; the \
             internal results of several runs are their mean.",
            if with_intervals {
                format!("Each value with {}", interval_words(confidence))
            } else {
                "No interval (bootstrapping was off)".into()
            }
        );
        Some(Table { caption, header, rows })
    }

    fn markdown(&self) -> String {
        let mut out = format!("{}\n\n", self.caption);
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(self.header.clone()));
        out.push_str(&line(self.header.iter().map(|_| "---".to_string()).collect()));
        for row in &self.rows {
            out.push_str(&line(row.iter().map(|c| c.text("±", "-")).collect()));
        }
        out
    }

    fn latex(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "% Written by radrun; needs \\usepackage{{booktabs}}.");
        let _ = writeln!(out, "\\begin{{table}}[ht]\n\\centering");
        let _ = writeln!(out, "\\caption{{{}}}", tex_escape(&self.caption).replace('±', "$\\pm$"));
        let _ = writeln!(out, "\\begin{{tabular}}{{{}}}\n\\toprule", "l".repeat(self.header.len()));
        let escape_row = |cells: Vec<String>| cells.join(" & ") + " \\\\";
        let _ = writeln!(out, "{}\n\\midrule", escape_row(self.header.iter().map(|h| tex_escape(h)).collect()));
        for row in &self.rows {
            let cells = row.iter().map(|c| match c {
                Cell::Text(t) => tex_escape(t),
                other => other.text("$\\pm$", "--"),
            });
            let _ = writeln!(out, "{}", escape_row(cells.collect()));
        }
        let _ = writeln!(out, "\\bottomrule\n\\end{{tabular}}\n\\end{{table}}");
        out
    }
}

impl Cell {
    /// The cell with `pm` between mean and SD and `dash` between the bounds.
    fn text(&self, pm: &str, dash: &str) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::WithInterval(v, Some((lo, hi))) => format!("{v:.3} ({lo:.3}{dash}{hi:.3})"),
            Cell::WithInterval(v, None) => format!("{v:.3}"),
            Cell::MeanSd(mean, sd) => format!("{mean:.3} {pm} {sd:.3}"),
        }
    }
}

/// How the intervals of the tables were made.
fn interval_words(confidence: f64) -> String {
    format!(
        "its {} % confidence interval in parentheses (bootstrap percentile method, resampling patients where \
         groups are known; Wilson score intervals for sensitivity and specificity at the threshold)",
        confidence * 100.0
    )
}

/// "5 folds x 3 seeds": how many distinct values each repeat key takes.
fn repeat_words(swept_keys: &[String], runs: &[(String, Vec<String>, Option<Status>)]) -> String {
    let words: Vec<String> = REPEAT_KEYS
        .iter()
        .zip(["folds", "seeds"])
        .filter_map(|(key, word)| {
            let i = swept_keys.iter().position(|k| k == key)?;
            let distinct: BTreeSet<&String> = runs.iter().map(|(_, values, _)| &values[i]).collect();
            Some(format!("{} {word}", distinct.len()))
        })
        .collect();
    if words.is_empty() { "repeated runs".into() } else { words.join(" x ") }
}

/// `text` with LaTeX's special characters escaped.
pub(crate) fn tex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '|' => out.push_str("\\textbar{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_special_characters_are_escaped() {
        assert_eq!(tex_escape("test_macro_f1 & 95%"), "test\\_macro\\_f1 \\& 95\\%");
    }

    #[test]
    fn spread_is_the_sample_sd() {
        // values 1, 2, 3, 4: mean 2.5, SD sqrt(5/3)
        let [mean, sd, min, max] = describe(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        // exactly for the mean of small whole numbers; the SD is a few float64 roundings
        // of values near 1 (1.1e-16 each) from sqrt(5/3), and n for n - 1 would be 13 % off
        assert_eq!((mean, min, max), (2.5, 1.0, 4.0));
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
