//! `radrun clean RECIPE --orphans`: the run folders under runs/<recipe>/ that belong to no
//! run of the recipe's plan any more (editing a swept value, or any setting, gives its runs
//! new ids and leaves the old folders behind). Found here for `radrun status` to list too,
//! and removed here, each claimed first so that no live process loses the folder it
//! trains in.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use radrun_data::paths::path_text;
use serde::Serialize;

use crate::cli::CleanArgs;
use crate::error::RadrunError;
use crate::recipe::SetFlags;
use crate::recipe::plan::{Plan, display_value};
use crate::recipe::settings::Settings;
use crate::store::claim::{ClaimRecord, Claimed, claim, read_claim};
use crate::store::{RunDir, Status, WriteError};

/// How many differing keys an orphan's line names.
const SHOWN_DIFFERENCES: usize = 3;

/// A run folder under runs/<recipe>/ that no run of the plan has now.
#[derive(Debug, Serialize)]
pub(super) struct Orphan {
    pub run_id: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// The state its status.json records (done, failed, interrupted, running).
    pub state: &'static str,
    /// The run of the plan whose settings are nearest to the orphan's recipe.toml (none
    /// when that cannot be read), and the keys at which they differ.
    pub nearest_run: Option<String>,
    pub differences: Vec<Difference>,
    /// What changed, in a line.
    pub detail: String,
    /// Why `radrun clean` leaves it: a live process trains in it, or it was trained with
    /// other `--set` flags than those given now.
    pub kept_because: Option<String>,
}

/// A key whose value differs between an orphan's recipe.toml and the nearest run.
#[derive(Debug, Serialize)]
pub(super) struct Difference {
    pub key: String,
    /// The value in the orphan's recipe.toml, and in the plan's run (`None`: not set).
    pub was: Option<String>,
    pub now: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let was = self.was.as_deref().unwrap_or("unset");
        let now = self.now.as_deref().unwrap_or("unset");
        write!(f, "{} was {was}, now {now}", self.key)
    }
}

impl Orphan {
    fn new(dir: &RunDir, status: Status, current: &[(&str, toml::Value)], given: &[String], stale: Duration) -> Self {
        let recipe = std::fs::read_to_string(dir.path().join("recipe.toml")).ok();
        let (nearest_run, differences) = recipe
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|table| {
                let was = toml::Value::Table(table);
                current
                    .iter()
                    .map(|(id, now)| {
                        let mut found = Vec::new();
                        collect_differences("", Some(&was), Some(now), &mut found);
                        (id.to_string(), found)
                    })
                    .min_by_key(|(_, found)| found.len())
            })
            .unzip();
        let differences = differences.unwrap_or_default();
        let owner = read_claim(&dir.claim_path()).filter(|record| record.stale_reason(stale).is_none());
        let trained_with = set_flags(&status.provenance.command_line);
        let kept_because = match owner {
            Some(owner) => {
                Some(format!("{} is training in it (heartbeat {:.0} s ago)", owner_text(&owner), owner.heartbeat_age()))
            }
            None if trained_with.as_slice() != given => Some(format!(
                "it was trained with {}, and this command gives {}: it may be a run of that variant, not an \
                 orphan; give the same --set flags to clean that variant's orphans",
                flags_text(&trained_with),
                flags_text(given)
            )),
            None => None,
        };
        Self {
            detail: describe(nearest_run.as_deref(), &differences),
            run_id: status.run_id,
            path: dir.path().to_path_buf(),
            state: status.state.name(),
            nearest_run,
            differences,
            kept_because,
        }
    }
}

/// The orphaned run folders under `folder` (runs/<recipe>), sorted by name: sub-folders
/// (a link is not followed) whose status.json is radrun's and names the folder's own
/// run, and whose run id no run of `plan` has.
pub(super) fn orphans(folder: &Path, plan: &Plan) -> Vec<Orphan> {
    let ids: HashSet<&str> = plan.runs.iter().map(|run| run.id.as_str()).collect();
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut found: Vec<(RunDir, Status)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok().filter(|name| !ids.contains(name.as_str()))?;
            let dir = RunDir::new(entry.path());
            let status = dir.status().filter(|status| status.run_id == name)?;
            Some((dir, status))
        })
        .collect();
    if found.is_empty() {
        return Vec::new();
    }
    found.sort_by(|a, b| a.1.run_id.cmp(&b.1.run_id));
    let current: Vec<(&str, toml::Value)> =
        plan.runs.iter().map(|run| (run.id.as_str(), resolved(&run.settings))).collect();
    let mut given = plan.set_flags();
    given.sort();
    found.into_iter().map(|(dir, status)| Orphan::new(&dir, status, &current, &given, plan.stale_after)).collect()
}

/// A run's settings as its recipe.toml holds them.
fn resolved(settings: &Settings) -> toml::Value {
    let text = toml::to_string(settings).expect("settings serialize as TOML");
    toml::Value::Table(text.parse().expect("the TOML radrun writes parses"))
}

/// Collects the keys at which `was` and `now` differ: tables, and lists of tables (by
/// index, as `train.phases.0.learning_rate`), are descended; other values compared whole.
fn collect_differences(key: &str, was: Option<&toml::Value>, now: Option<&toml::Value>, out: &mut Vec<Difference>) {
    if was == now {
        return;
    }
    if let (Some(a), Some(b)) = (was.and_then(children), now.and_then(children)) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let path = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
            collect_differences(&path, a.get(k).copied(), b.get(k).copied(), out);
        }
        return;
    }
    out.push(Difference { key: key.to_string(), was: was.map(ToString::to_string), now: now.map(ToString::to_string) });
}

/// The entries of a table, or of a list of tables by index.
fn children(value: &toml::Value) -> Option<BTreeMap<String, &toml::Value>> {
    match value {
        toml::Value::Table(table) => Some(table.iter().map(|(k, v)| (k.clone(), v)).collect()),
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            Some(items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect())
        }
        _ => None,
    }
}

/// What an orphan's differences from the nearest run of the plan come to, in a line.
fn describe(nearest: Option<&str>, differences: &[Difference]) -> String {
    let Some(nearest) = nearest else {
        return "no run of the recipe has its id now (its recipe.toml cannot be read to say what changed)".into();
    };
    if differences.is_empty() {
        return format!(
            "its settings are those of run {nearest} under another id (data.root written otherwise, or an id \
             given by another radrun version)"
        );
    }
    let shown: Vec<String> = differences.iter().take(SHOWN_DIFFERENCES).map(ToString::to_string).collect();
    let more = differences.len().saturating_sub(SHOWN_DIFFERENCES);
    let more = if more == 0 { String::new() } else { format!(" (and {more} more key(s))") };
    format!("differs from run {nearest}: {}{more}", shown.join("; "))
}

/// The `--set` flags of a recorded command line (`--set k=v` or `--set=k=v`), as
/// [`normalized`] writes them.
fn set_flags(command_line: &[String]) -> Vec<String> {
    let mut raw = Vec::new();
    let mut args = command_line.iter();
    while let Some(arg) = args.next() {
        if arg == "--set" {
            raw.extend(args.next().cloned());
        } else if let Some(flag) = arg.strip_prefix("--set=") {
            raw.push(flag.to_string());
        }
    }
    normalized(&raw)
}

/// `--set` flags as the plan writes them (`key=value`, the value as run ids show it),
/// sorted: `train.learning_rate=1e-3` and `train.learning_rate=0.001` read the same.
fn normalized(raw: &[String]) -> Vec<String> {
    let mut flags = match SetFlags::parse(raw) {
        Ok(set) => set.0.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect(),
        Err(_) => raw.to_vec(),
    };
    flags.sort();
    flags
}

/// Who holds a claim, as the messages name it.
fn owner_text(record: &ClaimRecord) -> String {
    format!("process {} on {}", record.pid, record.host)
}

fn flags_text(flags: &[String]) -> String {
    if flags.is_empty() {
        return "no --set flag".into();
    }
    flags.iter().map(|flag| format!("--set {flag}")).collect::<Vec<_>>().join(" ")
}

/// What became of an orphan.
enum Outcome {
    Removed,
    Kept(String),
}

/// `radrun clean`: with `--orphans`, removes the orphaned run folders (with `--dry-run`,
/// lists them); without it, removes nothing and says which flag to give (exit 2).
pub fn clean(args: &CleanArgs) -> Result<(), RadrunError> {
    if !args.orphans {
        return Err(super::usage_error(
            Path::new("(command line)"),
            "say what to remove: `radrun clean RECIPE --orphans` removes the run folders that belong to no run of \
             the recipe any more (`radrun status RECIPE` lists them; add --dry-run to see what would go); nothing \
             else is removed"
                .into(),
        ));
    }
    let plan = super::load_plan(&args.plan)?;
    let folder = args.runs.join(&plan.recipe_name);
    let orphans = orphans(&folder, &plan);
    let (remove_verb, keep_verb) = if args.dry_run { ("would remove", "would keep") } else { ("removed", "kept") };
    let mut kept = 0;
    for orphan in &orphans {
        let outcome = match &orphan.kept_because {
            Some(reason) => Outcome::Kept(reason.clone()),
            None if args.dry_run => Outcome::Removed,
            None => remove(orphan, plan.stale_after)?,
        };
        let path = path_text(&orphan.path);
        match outcome {
            Outcome::Removed => println!("{remove_verb} {path} ({}; {})", orphan.state, orphan.detail),
            Outcome::Kept(reason) => {
                kept += 1;
                println!("{keep_verb} {path}: {reason}");
            }
        }
    }
    println!(
        "{}: {} orphaned run folder(s) in {}: {} {remove_verb}, {kept} {keep_verb}",
        path_text(&plan.recipe_path),
        orphans.len(),
        path_text(&folder),
        orphans.len() - kept
    );
    Ok(())
}

/// Removes an orphan's folder: claimed first, as a training process claims a run (a live
/// claim keeps it, a stale one is taken over), then moved aside, out of reach of any
/// process that claims the same run id afterwards, and removed.
fn remove(orphan: &Orphan, stale_after: Duration) -> Result<Outcome, RadrunError> {
    let held = match claim(&orphan.path, stale_after) {
        Ok(Claimed::Ours(held)) => held,
        Ok(Claimed::Taken(owner)) => {
            return Ok(Outcome::Kept(format!("{} has just claimed it", owner_text(&owner))));
        }
        Err(e) => return Ok(Outcome::Kept(format!("it cannot be claimed before removing it: {e}"))),
    };
    let disk = |path: &Path, source: std::io::Error| RadrunError::Disk(WriteError { path: path.to_path_buf(), source });
    let aside = orphan.path.with_file_name(format!(".{}.removing", orphan.run_id));
    std::fs::rename(&orphan.path, &aside).map_err(|e| disk(&orphan.path, e))?;
    // the claim's file went with the folder: dropping it removes nothing
    drop(held);
    std::fs::remove_dir_all(&aside).map_err(|e| disk(&aside, e))?;
    Ok(Outcome::Removed)
}
