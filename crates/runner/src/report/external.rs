//! The report's "External validation" section: per set scored by `radrun evaluate`, what
//! was applied to what (and what the leakage check compared), its headline results
//! beside the run(s)' internal ones, and the views of its test evaluation files, drawn
//! from its folder as a run's are (confusion matrix, ROC curves, calibration, decision
//! curve, per-class table).

use std::fmt::Write as _;
use std::path::Path;

use radrun_data::paths::path_text;

use super::page::{self, escape};
use super::{Table, test_views};
use crate::store::external::ExternalRecord;

/// The section; nothing when no set was scored.
pub(super) fn section(folder: &Path) -> String {
    let records = ExternalRecord::all(folder);
    if records.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<p>Each external set scored by the run(s) named, with their preprocessing and the threshold and \
         temperature they chose on their own validation split (never re-tuned on the set). Intervals: \
         patient bootstrap, as for the internal test set.</p>",
    );
    for (dir, record) in &records {
        let _ = write!(out, "<h3>{}</h3>{}", escape(&record.name), facts(record));
        out += &page::table(&side_by_side(record), "", "", None);
        out += &test_views(dir);
    }
    page::section("external", "External validation", &out)
}

/// What was applied to which set, how it was checked, and what a reader must know.
fn facts(r: &ExternalRecord) -> String {
    let leakage = &r.leakage;
    let mut facts = vec![
        format!("<b>data</b>: {}", escape(&path_text(&r.data))),
        format!("<b>runs</b>: {}", escape(&r.runs.join(", "))),
        format!("<b>images</b>: {}, <b>patients</b>: {}", r.images, r.patients),
        format!("<b>fingerprint</b>: {} files, sha256 {}", r.fingerprint.files, escape(&r.fingerprint.sha256)),
        format!(
            "<b>leakage check</b>: {} shared file(s), {} shared patient(s) against the {} files and {} patients of \
             the run(s)' split.csv",
            leakage.shared_files, leakage.shared_patients, leakage.run_files, leakage.run_patients
        ),
    ];
    if let Some(t) = r.decisions.threshold {
        facts.push(format!("<b>threshold</b> (chosen on validation): {t:.4}"));
    }
    if let Some(t) = r.decisions.temperature {
        facts.push(format!("<b>temperature</b> (fitted on validation): {t:.4}"));
    }
    if !r.missing_classes.is_empty() {
        facts.push(format!("<b>classes without images</b>: {}", escape(&r.missing_classes.join(", "))));
    }
    let mut out = format!("<p class=\"facts\">{}</p>", facts.join(" · "));
    for note in &r.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
    }
    out
}

/// Each headline metric: internal test value, external value and its interval.
fn side_by_side(r: &ExternalRecord) -> Table {
    let number = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let header = ["metric", "internal test", "external", "external lower", "external upper"];
    let rows = r
        .test
        .iter()
        .map(|(metric, value)| {
            let interval = r.test_intervals.get(metric);
            vec![
                metric.clone(),
                number(r.internal.get(metric).copied()),
                number(Some(*value)),
                number(interval.map(|i| i.lower)),
                number(interval.map(|i| i.upper)),
            ]
        })
        .collect();
    Table { header: header.map(String::from).to_vec(), rows }
}
