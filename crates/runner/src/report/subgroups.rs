//! The report's subgroup view (subgroups.csv, `eval.subgroups`): a forest plot of the
//! main metric in each subgroup against the whole test set, and the full table.

use std::path::Path;

use super::charts::{self, ForestRow};
use super::{Table, cell, page};

/// The metric the forest plot shows: the first of these the table holds.
const MAIN_METRICS: [&str; 4] = ["macro_roc_auc", "dice_mean", "accuracy", "subset_accuracy"];

/// The subgroup section of a folder with subgroups.csv, else nothing.
pub(super) fn subgroup_view(dir: &Path) -> String {
    let Some(table) = Table::read(&dir.join("subgroups.csv")) else { return String::new() };
    let (Some(metric_column), Some(level_column)) = (table.column("metric"), table.column("level")) else {
        return String::new();
    };
    let mut out = "<h3>Subgroups (test)</h3>".to_string();
    let held = |m: &str| table.rows.iter().any(|r| r[metric_column] == m);
    if let Some(metric) = MAIN_METRICS.into_iter().find(|m| held(m)) {
        let number = |row: &[String], column: &str| Some(cell(&table, row, column)).filter(|v| v.is_finite());
        let rows: Vec<ForestRow> = table
            .rows
            .iter()
            .filter(|r| r[metric_column] == metric)
            .filter_map(|r| {
                let subgroup = table.column("subgroup").map_or("", |c| r[c].as_str());
                let patients = table.column("patients").map_or("", |c| r[c].as_str());
                Some(ForestRow {
                    label: format!("{subgroup}: {} ({patients} patients)", r[level_column]),
                    value: number(r, "value")?,
                    interval: number(r, "lower").zip(number(r, "upper")),
                })
            })
            .collect();
        let whole = Table::read(&dir.join("intervals.csv")).and_then(|t| {
            let (m, c, v) = (t.column("metric")?, t.column("class")?, t.column("value")?);
            t.rows.iter().find(|r| r[m] == metric && r[c].is_empty()).and_then(|r| r[v].parse().ok())
        });
        let title = format!("{metric} by subgroup");
        let svg = charts::forest(&title, &format!("{metric} (dashed: the whole test set)"), &rows, whole);
        out += &charts::img(&svg, &format!("forest plot of {metric} by subgroup"), "chart");
    }
    out += "<p>Each level's difference from the rest of the test set, with its bootstrap interval and two-sided \
            p-value (not adjusted for the number of comparisons); the levels of fewer patients than \
            <code>eval.min_subgroup</code> are pooled into one level not named by them.</p>";
    out + &page::table(&table, "", "", None)
}
