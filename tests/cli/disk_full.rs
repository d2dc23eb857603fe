//! A full disk, on a real 600 kB tmpfs: the run fails naming the file and
//! the cause once, leaves no temporary file and no claim, and says "failed".

use std::path::{Path, PathBuf};

use crate::common::{Project, TINY, stderr};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one (needs root); `None` where this machine does not allow it, which CI must.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .ok()?;
        if out.status.success() {
            return Some(Self(at.to_path_buf()));
        }
        assert!(
            !radrun_data::testing::in_ci(),
            "CI runs as root and must mount a tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn files_under(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn a_full_disk_fails_the_run_once_and_cleanly() {
    let p = Project::new(2);
    let Some(disk) = Tmpfs::mount(&p.path().join("small"), "600k") else { return };
    // a network whose checkpoint (weights, best weights, two Adam moments) exceeds 600 kB
    let name = p.recipe("full.toml", &TINY.replace("dense_units = 16", "dense_units = 256"));
    let runs = disk.0.join("runs");
    let out = p.run(&[&name, "--quiet", "--runs", runs.to_str().unwrap()]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.matches("No space left on device").count(), 1, "said once:\n{said}");
    assert!(said.contains("cannot write") && said.contains("checkpoint.safetensors"), "{said}");
    let files = files_under(&runs);
    assert!(!files.iter().any(|f| f.starts_with(".partial") || f.starts_with(".claim-")), "{files:?}");
    assert!(!files.iter().any(|f| f == "claim.json"), "{files:?}");
    let run = std::fs::read_dir(runs.join("full")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "failed");
    assert!(status["error"].as_str().unwrap().contains("No space left on device"), "{status}");
}
