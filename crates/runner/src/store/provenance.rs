//! Where a run's results came from, so a reader can tell whether two results are
//! comparable and anyone can rerun one: radrun's build, the recipe file's content and
//! git state, the command line, the machine's libtorch/CUDA/cuDNN, and a fingerprint of
//! the dataset's files. Also the salted hash that stands for a patient or group in
//! every output (a PatientID itself is never written).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use std::collections::BTreeMap;

use radrun_data::volume_dataset::{VolumeImages, VolumeSplit};
use radrun_data::{DataSettings, Dataset, GroupBy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What produced a run, recorded in its `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The git commit radrun was built from (with `-dirty` when the work tree had
    /// changes), when it was built from a git clone.
    pub radrun_commit: Option<String>,
    /// The command line, as given.
    pub command_line: Vec<String>,
    /// SHA-256 of the recipe file's bytes.
    pub recipe_sha256: String,
    /// The recipe's git state, when it is in a git work tree.
    pub recipe_git: Option<GitState>,
    /// CUDA runtime and cuDNN versions, when the run used a GPU.
    pub cuda_version: Option<String>,
    pub cudnn_version: Option<String>,
    /// The dataset files the run read (filled in when the dataset is split).
    pub dataset: Option<DatasetFingerprint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitState {
    pub commit: String,
    /// Uncommitted changes anywhere in the work tree.
    pub dirty: bool,
}

/// One hash for a run's whole dataset: SHA-256 over the lines `path<TAB>bytes<TAB>sha256`
/// of every training, validation and test file and of the tables that label or group
/// them (`data.labels`, `data.group_by = { csv = ... }`), sorted, with paths relative to
/// `data.root`. The per-file list is the run's `split.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    pub files: usize,
    pub bytes: u64,
    pub sha256: String,
    /// SHA-256 of each table the labels or groups came from.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
}

/// SHA-256 of the tables `data` reads labels or groups from, by path relative to
/// `data.root` (a table that cannot be read has none).
pub fn table_hashes(data: &DataSettings) -> BTreeMap<String, String> {
    let mut tables = vec![data.labels.clone()];
    if let GroupBy::Csv(file) = &data.group_by {
        tables.push(file.clone());
    }
    tables
        .into_iter()
        .filter(|t| !t.as_os_str().is_empty())
        .filter_map(|t| {
            let bytes = std::fs::read(data.root.join(&t)).ok()?;
            Some((relative(&data.root.join(&t), &data.root), hex(&Sha256::digest(&bytes))))
        })
        .collect()
}

impl Provenance {
    /// What is the same for every run of a plan.
    pub fn of_plan(recipe: &Path) -> std::io::Result<Provenance> {
        let bytes = std::fs::read(recipe)?;
        Ok(Provenance {
            radrun_commit: option_env!("RADRUN_GIT_COMMIT").map(str::to_string),
            command_line: std::env::args().collect(),
            recipe_sha256: hex(&Sha256::digest(&bytes)),
            recipe_git: git_state(recipe),
            cuda_version: None,
            cudnn_version: None,
            dataset: None,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The git commit and dirty flag of the work tree holding `file`, if any.
fn git_state(file: &Path) -> Option<GitState> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(folder)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(GitState { commit, dirty })
}

/// A dataset file as the run's `split.csv` lists it.
pub struct FileRecord<'a> {
    /// Path relative to `data.root`, `/`-separated.
    pub relative: String,
    pub sample: &'a radrun_data::Sample,
    /// "train", "validation" or "test".
    pub split: &'static str,
}

/// Every file of the dataset's three splits, sorted by split then path.
pub fn file_records<'a>(dataset: &'a Dataset, root: &Path) -> Vec<FileRecord<'a>> {
    let mut records: Vec<FileRecord> = [&dataset.train, &dataset.validation, &dataset.test]
        .into_iter()
        .flat_map(|split| {
            split.samples.iter().map(move |sample| FileRecord {
                relative: relative(&sample.path, root),
                sample,
                split: split.name,
            })
        })
        .collect();
    records.sort_by(|a, b| (split_rank(a.split), &a.relative).cmp(&(split_rank(b.split), &b.relative)));
    records
}

fn split_rank(name: &str) -> u8 {
    match name {
        "train" => 0,
        "validation" => 1,
        _ => 2,
    }
}

fn relative(path: &Path, root: &Path) -> String {
    radrun_data::paths::slash_path(path.strip_prefix(root).unwrap_or(path))
}

/// The fingerprint of the files of `records` and of the `tables` (see [`table_hashes`]).
pub fn fingerprint(records: &[FileRecord], tables: BTreeMap<String, String>) -> DatasetFingerprint {
    let files = records.iter().map(|r| (r.relative.as_str(), r.sample.origin.bytes, r.sample.origin.sha256.as_str()));
    fingerprint_of(files.collect(), tables)
}

/// The fingerprint of files given as (path relative to the root, bytes, SHA-256).
fn fingerprint_of(files: Vec<(&str, u64, &str)>, tables: BTreeMap<String, String>) -> DatasetFingerprint {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(relative, bytes, sha256)| format!("{relative}\t{bytes}\t{sha256}"))
        .chain(tables.iter().map(|(path, sha256)| format!("{path}\ttable\t{sha256}")))
        .collect();
    lines.sort();
    DatasetFingerprint {
        files: files.len(),
        bytes: files.iter().map(|(_, bytes, _)| bytes).sum(),
        sha256: hex(&Sha256::digest(lines.join("\n").as_bytes())),
        tables,
    }
}

/// One file a volume run read: a channel's file (each file of a DICOM series), or a
/// mask. Its run's `split.csv` lists them, with the columns of the 2D one and the case.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeFile {
    pub relative: String,
    pub split: &'static str,
    pub case: String,
    /// The case's class (classification), else empty.
    pub class: String,
    /// The case's patient, hashed with the dataset's salt.
    pub group: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The files of a volume run's cases, split by split (training, validation, test),
/// hashed, their patients hashed with `salt` (the dataset's, [`group_salt`]); with the
/// fingerprint of the whole.
pub fn volume_files(
    images: &VolumeImages,
    split: &VolumeSplit,
    data: &DataSettings,
    salt: &str,
) -> Result<(Vec<VolumeFile>, DatasetFingerprint)> {
    let classes = images.classes();
    let parts = [("train", &split.train), ("validation", &split.validation), ("test", &split.test)];
    let mut records = Vec::new();
    for (name, cases) in parts {
        for facts in cases.iter() {
            for path in images.layout_case(facts).files()? {
                // streamed: a CT file need not be held whole to be hashed
                let mut hasher = Sha256::new();
                let bytes = std::fs::File::open(&path)
                    .and_then(|mut file| std::io::copy(&mut file, &mut hasher))
                    .with_context(|| format!("cannot read {}", path.display()))?;
                records.push(VolumeFile {
                    relative: relative(&path, &data.root),
                    split: name,
                    case: facts.name.clone(),
                    class: facts.class.and_then(|c| classes.get(c).cloned()).unwrap_or_default(),
                    group: group_hash(salt, &facts.group),
                    bytes,
                    sha256: hex(&hasher.finalize()),
                });
            }
        }
    }
    let files = records.iter().map(|r| (r.relative.as_str(), r.bytes, r.sha256.as_str())).collect();
    let fingerprint = fingerprint_of(files, table_hashes(data));
    Ok((records, fingerprint))
}

/// How the files of a done run's `split.csv` differ from the dataset on disk now.
#[derive(Debug, Default, PartialEq)]
pub struct DatasetChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

impl DatasetChanges {
    /// Compares the files a run read (its `split.csv`, paths relative to `root`) with
    /// the image files found now: a file is modified when its size or SHA-256 differs.
    /// Files the run skipped as unreadable (its data summary) do not count as added.
    /// A labels or group table whose hash differs from the one the run recorded counts
    /// as modified. None when the run has no readable split.csv (made before radrun
    /// recorded it, or damaged: then nothing can be compared).
    pub fn of_run(run_dir: &Path, data: &DataSettings, files_now: &[&Path]) -> Option<DatasetChanges> {
        let root = &data.root;
        let mut reader = csv::Reader::from_path(run_dir.join("split.csv")).ok()?;
        let mut recorded: BTreeMap<String, (u64, String)> = Default::default();
        for record in reader.records() {
            let record = record.ok()?;
            let (file, bytes, sha256) = (record.get(0)?, record.get(5)?, record.get(6)?);
            recorded.insert(super::io::read_cell(file).to_string(), (bytes.parse().ok()?, sha256.to_string()));
        }
        let skipped: Vec<String> = std::fs::read(run_dir.join("data_summary.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|summary| {
                let list = summary["skipped"].as_array()?.iter().filter_map(|s| s["path"].as_str());
                Some(list.map(|p| relative(Path::new(p), root)).collect())
            })
            .unwrap_or_default();
        let mut changes = DatasetChanges::default();
        let mut seen = std::collections::BTreeSet::new();
        for path in files_now {
            let name = relative(path, root);
            match recorded.get(&name) {
                None if !skipped.contains(&name) => changes.added.push(name.clone()),
                None => {}
                Some((bytes, sha256)) => {
                    let same = std::fs::read(path)
                        .is_ok_and(|b| b.len() as u64 == *bytes && hex(&Sha256::digest(&b)) == *sha256);
                    if !same {
                        changes.modified.push(name.clone());
                    }
                }
            }
            seen.insert(name);
        }
        changes.removed = recorded.into_keys().filter(|name| !seen.contains(name)).collect();
        let tables_then = super::run_dir::RunDir::new(run_dir.to_path_buf())
            .status()
            .and_then(|s| s.provenance.dataset)
            .map(|d| d.tables)
            .unwrap_or_default();
        let tables_now = table_hashes(data);
        for (table, sha256) in &tables_then {
            if tables_now.get(table) != Some(sha256) {
                changes.modified.push(table.clone());
            }
        }
        Some(changes)
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }

    /// "2 added (a, b), 1 modified (c)", the first few files of each.
    pub fn describe(&self) -> String {
        let part = |what: &str, files: &[String]| {
            (!files.is_empty()).then(|| {
                let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
                let more = if files.len() > 3 { ", ..." } else { "" };
                format!("{} {what} ({}{more})", files.len(), shown.join(", "))
            })
        };
        [part("added", &self.added), part("removed", &self.removed), part("modified", &self.modified)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Name of the salt file in a dataset's root folder.
pub const SALT_FILE: &str = ".radrun-salt";

/// The dataset's salt for group hashes: read from `<root>/.radrun-salt`, created there
/// (random) on first use, or, when the dataset folder is read-only, kept in radrun's
/// cache folder under a name derived from the root's path. One salt per dataset makes
/// hashes stable across the runs and recipes of a study while a hash cannot be turned
/// back into a PatientID by trying likely IDs without the salt, which is never written
/// to a run folder.
pub fn group_salt(root: &Path) -> Result<String> {
    if let Some(salt) = existing_salt(root) {
        return Ok(salt);
    }
    let [in_root, in_cache] = salt_places(root);
    let salt = hex(&rand::random::<[u8; 16]>());
    let mut errors = Vec::new();
    for path in [in_root, in_cache] {
        match create_once(&path, &salt) {
            Ok(salt) => return Ok(salt),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    anyhow::bail!("cannot store the dataset's group salt ({})", errors.join("; "))
}

/// The dataset's salt where [`group_salt`] keeps it, if it made one: what compares the
/// groups of another set with a run's split.csv.
pub fn existing_salt(root: &Path) -> Option<String> {
    salt_places(root).iter().find_map(|path| std::fs::read_to_string(path).ok()).map(|salt| salt.trim().to_string())
}

/// Where a dataset's salt is kept: in the dataset's folder, else in radrun's cache.
fn salt_places(root: &Path) -> [PathBuf; 2] {
    let in_cache = super::io::cache_dir().join("salts").join(hex(&Sha256::digest(root.to_string_lossy().as_bytes())));
    [root.join(SALT_FILE), in_cache]
}

/// Writes `salt` to `path` unless another process got there first; returns the salt
/// the file holds.
fn create_once(path: &PathBuf, salt: &str) -> std::io::Result<String> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, salt.as_bytes())?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(salt.to_string()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().to_string())
        }
        Err(e) => Err(e.error),
    }
}

/// What stands for a group in outputs: 16 hex digits of SHA-256(salt, group).
pub fn group_hash(salt: &str, group: &str) -> String {
    hex(&Sha256::digest(format!("{salt}\0{group}").as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_hashes_depend_on_the_salt_and_hide_the_group() {
        let a = group_hash("salt-1", "SYN-TR0001");
        assert_eq!(a.len(), 16);
        assert_eq!(a, group_hash("salt-1", "SYN-TR0001"));
        assert_ne!(a, group_hash("salt-2", "SYN-TR0001"));
        assert!(!a.contains("TR0001"));
    }

    #[test]
    fn the_salt_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = group_salt(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(group_salt(dir.path()).unwrap(), first);
        assert_eq!(std::fs::read_to_string(dir.path().join(SALT_FILE)).unwrap(), first);
    }
}
