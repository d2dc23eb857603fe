//! The runner's build script: the git commit radrun is built from, embedded as
//! `RADRUN_GIT_COMMIT` for the provenance of every run (`-dirty` when tracked files had
//! uncommitted changes at build time; edits outside `crates/` are noticed at the next
//! commit or `git add`).

use std::path::Path;
use std::process::Command;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let repo = Path::new(&manifest).join("../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else { return };
    // --no-optional-locks: `status` must not rewrite the index it is watched by
    let dirty =
        git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=RADRUN_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // a commit or checkout moves HEAD's log, staging changes the index, and an edit of
    // any crate's source may make the tree dirty (cargo scans folders recursively)
    for file in [".git/HEAD", ".git/logs/HEAD", ".git/index", "crates"] {
        if repo.join(file).exists() {
            println!("cargo:rerun-if-changed={}", repo.join(file).display());
        }
    }
}
