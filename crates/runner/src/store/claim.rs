//! Claiming runs, so that many processes on many machines can share one runs folder and
//! never train the same run. A run is claimed by creating its `claim.json` atomically
//! (written aside, then hard-linked into place: the link fails when the file exists, on
//! local file systems and NFS alike). While the run trains, a thread refreshes the
//! claim's heartbeat every 30 seconds; the claim is removed when the run ends.
//!
//! A claim is stale, and any process may take it over, when its heartbeat is older than
//! `run.stale_after`; sooner when it is plainly dead: its process is gone from this host
//! (same host name and process namespace), or it belonged to an earlier attempt of the
//! same Slurm job (a requeued task: a lower `SLURM_RESTART_COUNT`). A live claim of
//! another host is never touched. Clocks of the machines sharing a folder must agree to
//! well within `stale_after` (NTP does this).
//!
//! Judging a claim and taking it over, refreshing a heartbeat, releasing a claim and the
//! owner's writes into the run folder all hold the run's lock (an advisory file lock on
//! `runs/<recipe>/.<run id>.lock`, outside the run folder, which stays self-contained), so a heartbeat never overwrites a claim that was just taken over, a
//! takeover never removes a claim that was just refreshed, and a process whose claim was
//! taken over (it stalled past `stale_after`) writes nothing more into the folder: it
//! finds out at its next write or heartbeat and stops that run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::io::{host_name, write_atomic};

/// How often a claim's heartbeat is refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// The file name of a claim in a run folder.
pub const CLAIM_FILE: &str = "claim.json";

/// Names of the claim and of the files processes claim with (written aside).
pub const CLAIM_PREFIXES: [&str; 2] = [CLAIM_FILE, ".claim-new-"];

/// `claim.json`: who trains the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub host: String,
    pub pid: u32,
    /// Unique to this claim: a process recognises its own claim by it.
    pub token: String,
    /// When the claim was made and last refreshed (RFC 3339).
    pub started: String,
    pub heartbeat: String,
    /// The process namespace of `pid` (containers on one host name have their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// The kernel's boot id: machines that share a host name (cloned VMs) differ in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// `SLURM_JOB_ID` of the claiming process, when it runs under Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// `SLURM_RESTART_COUNT`: how often Slurm had requeued that job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_restart: Option<u32>,
    /// The training's position, updated after every epoch ("epoch 3 of 15").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

impl ClaimRecord {
    fn new() -> Self {
        let now = jiff::Timestamp::now().to_string();
        let token = format!(
            "{}-{}-{:x}",
            host_name(),
            std::process::id(),
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        Self {
            host: host_name(),
            pid: std::process::id(),
            token,
            started: now.clone(),
            heartbeat: now,
            pid_namespace: pid_namespace(),
            boot_id: boot_id(),
            slurm_job: slurm_job(),
            slurm_restart: slurm_restart(),
            progress: None,
        }
    }

    /// Seconds since the last heartbeat (infinite when unreadable).
    pub fn heartbeat_age(&self) -> f64 {
        self.heartbeat
            .parse::<jiff::Timestamp>()
            .map_or(f64::INFINITY, |t| (jiff::Timestamp::now().as_second() - t.as_second()) as f64)
    }

    /// Why this claim no longer holds, or `None` while it is live.
    pub fn stale_reason(&self, stale_after: Duration) -> Option<String> {
        let age = self.heartbeat_age();
        if age > stale_after.as_secs_f64() {
            return Some(format!("its heartbeat is {age:.0} s old (run.stale_after is {} s)", stale_after.as_secs()));
        }
        let this_machine = self.host == host_name()
            && self.boot_id.is_some()
            && self.boot_id == boot_id()
            && self.pid_namespace == pid_namespace();
        if this_machine {
            // this process holds no claim on the run yet: one with its pid is an earlier one's
            if self.pid == std::process::id() {
                return Some(format!("process {} is this one: the claim is left from an earlier process", self.pid));
            }
            if !process_exists(self.pid) {
                return Some(format!("process {} is gone from this host", self.pid));
            }
        }
        if self.slurm_job.is_some()
            && self.slurm_job == slurm_job()
            && self.slurm_restart.unwrap_or(0) < slurm_restart().unwrap_or(0)
        {
            return Some(format!(
                "it belongs to an earlier attempt of this Slurm job {}, which Slurm requeued",
                self.slurm_job.as_deref()?
            ));
        }
        None
    }
}

fn slurm_job() -> Option<String> {
    std::env::var("SLURM_JOB_ID").ok().filter(|s| !s.is_empty())
}

fn slurm_restart() -> Option<u32> {
    std::env::var("SLURM_RESTART_COUNT").ok().and_then(|s| s.parse().ok())
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid").ok().map(|p| p.to_string_lossy().into_owned())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// Whether a process of this id exists on this machine; one of another user (hidden
/// by `hidepid`, or not ours to signal) counts as existing.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Holds the lock of the run in `folder` until dropped: `<recipe folder>/.<run>.lock`.
fn lock(folder: &Path) -> std::io::Result<std::fs::File> {
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = folder.parent().unwrap_or(folder).join(format!(".{name}.lock"));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    file.lock()?;
    Ok(file)
}

/// What trying to claim a run gave.
pub enum Claimed {
    /// The run is ours until the claim is dropped.
    Ours(Box<Claim>),
    /// Another live process trains it.
    Taken(ClaimRecord),
}

/// The run's lock while this process writes into its folder (see [`Claim::hold`]).
pub struct Held {
    _lock: Option<std::fs::File>,
}

/// A held claim: refreshed by a background thread, removed when dropped.
pub struct Claim {
    path: PathBuf,
    record: ClaimRecord,
    /// Set by the heartbeat when another process replaced the claim.
    lost: Arc<AtomicBool>,
    progress: Arc<std::sync::Mutex<Option<String>>>,
    stop: Option<Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
    /// What a stale claim taken over said, for the log.
    pub took_over: Option<(ClaimRecord, String)>,
}

/// Claims the run in `folder` (created if missing), taking over a stale claim.
pub fn claim(folder: &Path, stale_after: Duration) -> std::io::Result<Claimed> {
    std::fs::create_dir_all(folder)?;
    let path = folder.join(CLAIM_FILE);
    let mut took_over = None;
    // another round follows a takeover or a release, which other processes may win
    for _ in 0..5 {
        let record = ClaimRecord::new();
        if try_create(&path, &record)? {
            return Claim::start(path, record, took_over).map(|c| Claimed::Ours(Box::new(c)));
        }
        let _lock = lock(folder)?;
        let Some(current) = read_claim(&path) else {
            if !path.exists() {
                continue; // released meanwhile
            }
            // not written by radrun (claims are complete when they appear): stale once old
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let age = modified.and_then(|m| m.elapsed().ok()).unwrap_or_default();
            if age > stale_after {
                std::fs::remove_file(&path)?;
                continue;
            }
            return Err(std::io::Error::other(format!(
                "{} cannot be read; it is taken as a live claim until it is {} s old",
                path.display(),
                stale_after.as_secs()
            )));
        };
        match current.stale_reason(stale_after) {
            None => return Ok(Claimed::Taken(current)),
            Some(reason) => {
                // under the lock: no heartbeat refreshed it since it was read
                std::fs::remove_file(&path)?;
                took_over = Some((current, reason));
            }
        }
    }
    Err(std::io::Error::other(format!("{} keeps changing; other processes are claiming the run", path.display())))
}

/// Whether the claim at `path` is still the one with `token`: false only when it is
/// gone or another's (a read that fails for another reason is tried again once).
fn holds(path: &Path, token: &str) -> bool {
    for _ in 0..2 {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Ok(bytes) => {
                if let Ok(claim) = serde_json::from_slice::<ClaimRecord>(&bytes) {
                    return claim.token == token;
                }
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// The claim in a run folder, if there is a readable one.
pub fn read_claim(path: &Path) -> Option<ClaimRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Creates `path` holding `record` unless it exists: written aside, then linked.
fn try_create(path: &Path, record: &ClaimRecord) -> std::io::Result<bool> {
    let folder = path.parent().expect("a claim is in a run folder");
    let mut aside = tempfile::Builder::new().prefix(".claim-new-").tempfile_in(folder)?;
    aside.write_all(&serde_json::to_vec_pretty(record).expect("plain data serializes"))?;
    aside.as_file().sync_all()?;
    match std::fs::hard_link(aside.path(), path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
    // `aside` is removed when dropped
}

impl Claim {
    /// Starts the heartbeat of a claim just made; without one (no lock on this file
    /// system, no thread) the claim is withdrawn, since it would look stale to others.
    fn start(path: PathBuf, record: ClaimRecord, took_over: Option<(ClaimRecord, String)>) -> std::io::Result<Self> {
        let folder = path.parent().expect("a claim is in a run folder").to_path_buf();
        let withdraw = |e: std::io::Error| {
            let _ = std::fs::remove_file(&path);
            e
        };
        drop(lock(&folder).map_err(|e| {
            withdraw(std::io::Error::other(format!(
                "cannot lock {} (does this file system support flock?): {e}",
                folder.display()
            )))
        })?);
        let lost = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(std::sync::Mutex::new(None));
        let (stop, stopped) = channel::<()>();
        let (p, mut r, l, pr) = (path.clone(), record.clone(), lost.clone(), progress.clone());
        let heartbeat = std::thread::Builder::new()
            .name("radrun-heartbeat".into())
            .spawn(move || {
                let folder = p.parent().expect("a claim is in a run folder").to_path_buf();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    let _lock = match lock(&folder) {
                        Ok(lock) => lock,
                        Err(e) => {
                            tracing::warn!("cannot lock {} to refresh the heartbeat: {e}", folder.display());
                            continue;
                        }
                    };
                    if !holds(&p, &r.token) {
                        tracing::error!("the claim {} was taken over by another process; stopping", p.display());
                        l.store(true, Ordering::SeqCst);
                        return;
                    }
                    r.heartbeat = jiff::Timestamp::now().to_string();
                    r.progress = pr.lock().expect("progress lock").clone();
                    if let Err(e) = write_atomic(&p, &serde_json::to_vec_pretty(&r).expect("plain data serializes")) {
                        tracing::warn!("cannot refresh the heartbeat: {e}: {}", e.source);
                    }
                }
            })
            .map_err(withdraw)?;
        Ok(Self { path, record, lost, progress, stop: Some(stop), heartbeat: Some(heartbeat), took_over })
    }

    /// True once another process replaced this claim: stop, write nothing more.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The run's lock, held while the claim is still this process's: writes into the
    /// run folder happen under it, so none lands after a takeover. `None` (and the
    /// claim marked lost) when another process has taken the run over.
    pub fn hold(&self) -> Option<Held> {
        let folder = self.path.parent()?;
        // the lock worked when the claim was made; if it fails now, the claim is still
        // checked, without it
        let lock = lock(folder).inspect_err(|e| tracing::warn!("cannot lock {}: {e}", folder.display())).ok();
        if holds(&self.path, &self.record.token) {
            Some(Held { _lock: lock })
        } else {
            self.lost.store(true, Ordering::SeqCst);
            None
        }
    }

    /// Shown in `radrun status` from the next heartbeat on.
    pub fn set_progress(&self, progress: String) {
        *self.progress.lock().expect("progress lock") = Some(progress);
    }
}

impl Drop for Claim {
    /// Stops the heartbeat and removes the claim if it is still ours.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
        if let Some(_lock) = self.hold() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_claim_is_respected_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let Claimed::Ours(first) = claim(dir.path(), Duration::from_secs(600)).unwrap() else { panic!() };
        assert!(read_claim(&dir.path().join(CLAIM_FILE)).is_some_and(|c| c.token == first.record.token));
        drop(first);
        // another host's fresh claim is live; an old heartbeat is stale
        let path = dir.path().join(CLAIM_FILE);
        let mut other = ClaimRecord::new();
        other.host = "elsewhere".into();
        other.token = "t".into();
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(matches!(claim(dir.path(), Duration::from_secs(600)).unwrap(), Claimed::Taken(_)));
        other.heartbeat = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(700)).unwrap().to_string();
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let Claimed::Ours(taken) = claim(dir.path(), Duration::from_secs(600)).unwrap() else { panic!() };
        assert!(taken.took_over.as_ref().unwrap().1.contains("heartbeat"));
        drop(taken);
        assert!(!path.exists(), "a released claim is removed");
    }
}
