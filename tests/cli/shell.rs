//! `radrun completions` and `radrun man`, read by the real tools: bash completes from
//! the bash script, fish from the fish script (`complete -C`), zsh parses its script,
//! and `man` renders the pages.

use std::path::Path;
use std::process::Command;

use crate::common::{Project, stderr, stdout};

/// The output of `program args...`, which must succeed.
fn output(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let here = std::env::temp_dir();
    let out = Command::new(program).args(args).envs(env.iter().copied()).current_dir(here).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `radrun completions SHELL` into the project and returns its path.
fn script(p: &Project, shell: &str) -> String {
    let out = p.run(&["completions", shell]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = p.path().join(format!("radrun.{shell}"));
    std::fs::write(&path, stdout(&out)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_shells_complete_commands_and_options_from_the_generated_scripts() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    // bash: the completion function, as Tab calls it (command, word, previous word)
    let bash = format!(
        "source {}; complete_words() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _radrun radrun \"${{@: -1}}\" \
         \"${{@: -2:1}}\"; echo \"${{COMPREPLY[*]}}\"; }}; complete_words radrun pl; complete_words radrun evaluate \
         --ens; complete_words radrun completions f",
        script(&p, "bash")
    );
    let completed = output("bash", &["-c", &bash], &[]);
    assert_eq!(completed.lines().collect::<Vec<_>>(), ["plan", "--ensemble", "fish"], "{completed}");
    if which("fish") {
        let fish =
            format!("source {}; complete -C 'radrun pl'; complete -C 'radrun evaluate --ens'", script(&p, "fish"));
        let completed = output("fish", &["-c", &fish], &[]);
        assert!(completed.starts_with("plan\tShow the runs a recipe expands to"), "{completed}");
        assert!(completed.contains("\n--ensemble\t"), "{completed}");
    }
    if which("zsh") {
        let zsh = script(&p, "zsh");
        output("zsh", &["-n", &zsh], &[]);
        assert!(std::fs::read_to_string(&zsh).unwrap().starts_with("#compdef radrun"));
    }
}

#[test]
fn the_manual_pages_render_with_man() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    let out = p.run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = p.path().join("radrun.1");
    std::fs::write(&page, stdout(&out)).unwrap();
    let pages = p.path().join("man1");
    let written = p.run(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(written.status.success(), "{}", stderr(&written));
    // a page per command and sub-command, each path printed
    for name in ["radrun.1", "radrun-evaluate.1", "radrun-dicom-series.1", "radrun-completions.1"] {
        assert!(stdout(&written).contains(&pages.join(name).display().to_string()), "{}", stdout(&written));
    }
    let same = std::fs::read_to_string(pages.join("radrun.1")).unwrap() == std::fs::read_to_string(&page).unwrap();
    assert!(same, "radrun.1 is the page `radrun man` prints");
    if !which("man") {
        return;
    }
    let render =
        |page: &Path| output("man", &["-l", page.to_str().unwrap()], &[("MANPAGER", "cat"), ("MANWIDTH", "100")]);
    let main = render(&page);
    assert!(main.contains("radrun - Train and compare deep-learning models"), "{main}");
    assert!(main.contains("radrun-evaluate(1)"), "the commands, each with its page: {main}");
    let evaluate = render(&pages.join("radrun-evaluate.1"));
    assert!(evaluate.contains("--ensemble") && evaluate.contains("external"), "{evaluate}");
}

/// Whether `program` is on the PATH (scripts/test.sh installs it in CI, where it must be).
fn which(program: &str) -> bool {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output();
    let found = found.is_ok_and(|o| o.status.success());
    assert!(found || !radrun_data::testing::in_ci(), "{program} is missing: scripts/test.sh installs it");
    found
}
