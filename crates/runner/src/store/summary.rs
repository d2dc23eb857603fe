//! A recipe's summary.csv: one row per run of its plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::io::{WriteError, num, write_csv};
use super::status::{State, Status};

/// summary.csv of a recipe: one row per run, ranked by validation loss (the test set
/// must not choose the model), with the swept values and headline metrics.
pub fn write_summary(
    path: &Path,
    swept_keys: &[String],
    runs: &[(String, Vec<String>, Option<Status>)],
) -> Result<(), WriteError> {
    // every metric any run reported, sorted
    let keys = |pick: fn(&Status) -> &BTreeMap<String, f64>| -> Vec<String> {
        let all: BTreeSet<String> =
            runs.iter().filter_map(|(_, _, s)| s.as_ref()).flat_map(|s| pick(s).keys().cloned()).collect();
        all.into_iter().collect()
    };
    let validation_keys = keys(|s| &s.validation);
    let test_keys = keys(|s| &s.test);
    let mut ordered: Vec<&(String, Vec<String>, Option<Status>)> = runs.iter().collect();
    let val_loss = |s: &Option<Status>| {
        s.as_ref()
            .filter(|s| s.state == State::Done)
            .and_then(|s| s.validation.get("val_loss").copied())
            .unwrap_or(f64::INFINITY)
    };
    ordered.sort_by(|a, b| val_loss(&a.2).total_cmp(&val_loss(&b.2)));
    let header: Vec<String> = ["rank", "run_id"]
        .iter()
        .map(|s| s.to_string())
        .chain(swept_keys.iter().cloned())
        .chain(["status".to_string(), "evaluated_epoch".to_string()])
        .chain(validation_keys.iter().cloned())
        .chain(test_keys.iter().map(|k| format!("test_{k}")))
        .collect();
    let rows: Vec<Vec<String>> = ordered
        .iter()
        .enumerate()
        .map(|(i, (id, values, status))| {
            let done = status.as_ref().is_some_and(|s| s.state == State::Done);
            let state = status.as_ref().map_or("pending", |s| s.state.name()).to_string();
            let get = |map: Option<&BTreeMap<String, f64>>, k: &String| num(map.and_then(|m| m.get(k).copied()));
            [if done { (i + 1).to_string() } else { String::new() }, id.clone()]
                .into_iter()
                .chain(values.iter().cloned())
                .chain([
                    state,
                    status.as_ref().and_then(|s| s.evaluated_epoch).map(|e| e.to_string()).unwrap_or_default(),
                ])
                .chain(validation_keys.iter().map(|k| get(status.as_ref().map(|s| &s.validation), k)))
                .chain(test_keys.iter().map(|k| get(status.as_ref().map(|s| &s.test), k)))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}
