//! Runs that stop and go on: killed with SIGKILL after an epoch, stopped by
//! SIGINT in the middle of one, or given a damaged checkpoint, a run rerun with the same
//! command ends with exactly the metrics, evaluation and weights of a run that was never
//! interrupted (on the CPU, where training is deterministic). Damaged weights files are
//! refused by the commands that read them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Project, TINY, only_run, stderr};

/// A CNN with dropout and augmentation (both random), enough images that an epoch
/// takes a moment, and `epochs` epochs.
fn cnn_recipe(epochs: u32) -> String {
    TINY.replace("epochs = 2", &format!("epochs = {epochs}"))
        .replace("dense_units = 16", "dense_units = 16\ndropout = 0.3")
}

/// A transfer run: two phases (head, then the tutorial's unfreezing), from random weights.
fn transfer_recipe() -> String {
    let model = "kind = \"transfer\"\nbackbone = \"resnet18\"\nweights = \"none\"\nhead_units = 16";
    format!(
        "{}\n[[train.phases]]\nname = \"frozen\"\nepochs = 2\noptimizer = \"adam\"\ntrainable = \"head\"\n\
         [[train.phases]]\nname = \"fine_tune\"\nepochs = 2\noptimizer = \"rmsprop\"\nlearning_rate = 1e-4\n\
         trainable = \"tutorial\"\n",
        TINY.replace("kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16", model).replace("epochs = 2\n", "")
    )
}

fn spawn(project: &Project, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_radrun"))
        .args(args)
        .current_dir(project.path())
        .env_remove("RADRUN_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radrun starts")
}

/// The one run folder of `recipe` under `runs`.
pub(crate) fn run_folder(project: &Project, runs: &str, recipe: &str) -> Option<PathBuf> {
    let folder = project.path().join(runs).join(recipe);
    std::fs::read_dir(folder).ok()?.map(|e| e.unwrap().path()).find(|p| p.is_dir() && p.join("recipe.toml").exists())
}

/// The epochs a run's checkpoint.json says are done (and its batches into the next).
pub(crate) fn checkpoint_position(run: &Path) -> Option<(usize, u64)> {
    let text = std::fs::read(run.join("checkpoint.json")).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let progress = &value["progress"];
    Some((progress["records"].as_array()?.len(), progress["batches"].as_u64()?))
}

/// Waits until the training in `child` has checkpointed `epochs` epochs.
fn wait_for_epochs(project: &Project, child: &mut Child, recipe: &str, epochs: usize) -> PathBuf {
    let started = Instant::now();
    loop {
        if let Some(run) = run_folder(project, "runs", recipe)
            && checkpoint_position(&run).is_some_and(|(done, _)| done >= epochs)
        {
            return run;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("radrun ended ({status}) before epoch {epochs} was checkpointed");
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint of epoch {epochs} after 300 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What must not depend on interruptions: metrics.csv without its timing columns, the
/// test evaluation, the predictions and both weight files.
pub(crate) fn results(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !["seconds", "images_per_second", "data_wait_seconds"].contains(&&header[i]))
        .collect();
    let mut metrics = String::new();
    for record in std::iter::once(header.clone()).chain(reader.records().map(Result::unwrap)) {
        metrics += &keep.iter().map(|&i| record[i].to_string()).collect::<Vec<_>>().join(",");
        metrics += "\n";
    }
    let mut files = vec![("metrics.csv (timing columns left out)".to_string(), metrics.into_bytes())];
    for name in ["evaluation.json", "predictions.csv", "best.safetensors", "last.safetensors"] {
        files.push((name.to_string(), std::fs::read(run.join(name)).unwrap()));
    }
    files
}

/// Asserts that `resumed` ended with byte for byte the results of `reference`. Equality,
/// not a tolerance: both were trained by this binary on this machine with the same
/// libtorch thread count (the same `train.threads`: the recipe's, a `RADRUN_TRAIN__THREADS`
/// or `--set` both share, else all cores; the Slurm tests set 1), and the CPU kernels
/// radrun trains with (oneDNN convolutions, BLAS products, reductions) split their work by
/// the thread count alone and add the parts in a fixed order. Between thread counts, or
/// on a GPU (cuDNN), sums would come out in other orders and this would not hold.
pub(crate) fn assert_same_results(resumed: &Path, reference: &Path) {
    for ((name, got), (_, want)) in results(resumed).iter().zip(results(reference)) {
        assert!(
            *got == want,
            "{name} of the resumed run differs from the uninterrupted run's:\n{}\n---\n{}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(&want)
        );
    }
}

/// The uninterrupted run of the recipe, in `reference/`.
fn reference_run(project: &Project, name: &str) -> PathBuf {
    let out = project.run(&[name, "--quiet", "--runs", "reference"]);
    assert!(out.status.success(), "{}", stderr(&out));
    run_folder(project, "reference", name.trim_end_matches(".toml")).unwrap()
}

fn status_of(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap()
}

/// Kills training with SIGKILL once `epoch` epochs are checkpointed, checks the run
/// was left unfinished, reruns the same command and returns the rerun's stderr.
fn kill_and_resume(project: &Project, name: &str, epoch: usize) -> (PathBuf, String) {
    let mut child = spawn(project, &[name, "--quiet"]);
    let run = wait_for_epochs(project, &mut child, name.trim_end_matches(".toml"), epoch);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status_of(&run)["state"], "running", "killed before the run finished");
    assert!(run.join("claim.json").exists(), "SIGKILL leaves the claim behind");
    let rerun = project.run(&[name, "--quiet"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    (run, stderr(&rerun))
}

#[test]
fn a_run_killed_after_an_epoch_resumes_to_the_same_results() {
    let p = Project::new(12);
    // TensorBoard too ([track] is not part of the run id): each epoch once, as metrics.csv
    let name = p.recipe("killed.toml", &(cnn_recipe(6) + "\n[track]\ntensorboard = true\n"));
    kill_twice_and_compare(&p, &name, [1, 4], 6);
}

#[test]
fn a_run_with_warm_up_a_plateau_schedule_and_early_stopping_resumes_their_counters() {
    let p = Project::new(12);
    let controls = "warmup_epochs = 1\nschedule = { kind = \"plateau\", patience = 1, factor = 0.5 }\n\
                    early_stopping = { metric = \"val_accuracy\", patience = 3 }\ngradient_clip = { norm = 0.5 }\n\
                    weight_decay = 0.01\n";
    let name = p.recipe("controlled.toml", &cnn_recipe(9).replace("[train]\n", &format!("[train]\n{controls}")));
    let epochs = kill_twice_and_compare(&p, &name, [2, 4], 9);
    // the counters mattered: the rate was cut and training stopped early
    let rates: Vec<&str> = epochs.iter().map(|row| row[2].as_str()).collect();
    assert!(epochs.len() < 9 && rates.contains(&"0.0005"), "{epochs:?}");
}

/// Kills the run after each of `epochs` (a fresh start each time) and compares the
/// resumed run with an uninterrupted one; the uninterrupted run's metrics.csv rows.
fn kill_twice_and_compare(p: &Project, name: &str, epochs: [usize; 2], total: usize) -> Vec<Vec<String>> {
    let reference = reference_run(p, name);
    for epoch in epochs {
        let (run, said) = kill_and_resume(p, name, epoch);
        // the dead process's claim is taken over at once: its pid is gone from this host
        assert!(said.contains("took over the claim of process") && said.contains("is gone"), "{said}");
        let note = status_of(&run)["note"].as_str().unwrap().to_string();
        let resumed_after: usize = note
            .strip_prefix("resumed from its checkpoint after epoch ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("status note: {note}"));
        assert!((epoch..total).contains(&resumed_after), "{note}");
        assert_same_results(&run, &reference);
        if run.join("tensorboard").exists() {
            crate::track::assert_events_match_metrics(&run);
        }
        assert!(!run.join("checkpoint.safetensors").exists(), "a done run keeps its weights, not its checkpoint");
        assert!(!run.join("claim.json").exists());
        std::fs::remove_dir_all(p.path().join("runs")).unwrap();
    }
    let mut reader = csv::Reader::from_path(reference.join("metrics.csv")).unwrap();
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

#[test]
fn a_run_killed_in_the_middle_of_an_epoch_resumes_from_its_last_batch_checkpoint() {
    let p = Project::new(12);
    // a checkpoint after every batch (run.checkpoint_every is not part of the run id)
    let name = p.recipe("batches.toml", &(cnn_recipe(3) + "\n[run]\ncheckpoint_every = \"0s\"\n"));
    let reference = reference_run(&p, &name);
    let mut child = spawn(&p, &[&name, "--quiet"]);
    let started = Instant::now();
    let run = loop {
        if let Some(run) = run_folder(&p, "runs", "batches")
            && checkpoint_position(&run).is_some_and(|(epochs, batches)| epochs >= 1 && batches >= 3)
        {
            break run;
        }
        assert!(child.try_wait().unwrap().is_none(), "radrun ended before a checkpoint in epoch 2");
        assert!(started.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let rerun = p.run(&[&name, "--quiet"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let note = status_of(&run)["note"].as_str().unwrap().to_string();
    assert!(note.contains("after epoch 1 (batch ") || note.contains("after epoch 2 (batch "), "{note}");
    assert!(!note.contains("(batch 0 "), "resumed within an epoch: {note}");
    assert_same_results(&run, &reference);
}

#[test]
fn a_transfer_run_killed_at_the_phase_boundary_resumes_into_the_next_phase() {
    let p = Project::new(6);
    let name = p.recipe("transfer.toml", &transfer_recipe());
    let reference = reference_run(&p, &name);
    let (run, _) = kill_and_resume(&p, &name, 2);
    let note = status_of(&run)["note"].as_str().unwrap().to_string();
    assert!(
        ["after epoch 2 ", "after epoch 3 "].iter().any(|at| note.contains(at)),
        "resumed in the second phase: {note}"
    );
    assert_same_results(&run, &reference);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let phases: Vec<&str> = metrics.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(phases, ["frozen", "frozen", "fine_tune", "fine_tune"]);
}

fn interrupt(child: &Child) {
    // SAFETY: sending a signal to a child process this test started (not yet reaped).
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

#[test]
fn ctrl_c_checkpoints_mid_epoch_marks_the_run_interrupted_and_a_rerun_goes_on() {
    let p = Project::new(12);
    let name = p.recipe("stopped.toml", &cnn_recipe(5));
    let reference = reference_run(&p, &name);
    // the signal lands in the middle of an epoch almost always; between epochs
    // (validation) the checkpoint would hold no partial epoch: try again then
    let (run, out) = (0..5)
        .find_map(|_| {
            let mut child = spawn(&p, &[&name, "--quiet"]);
            let run = wait_for_epochs(&p, &mut child, "stopped", 1);
            interrupt(&child);
            let out = child.wait_with_output().unwrap();
            if checkpoint_position(&run).is_some_and(|(_, batches)| batches > 0) {
                return Some((run, out));
            }
            std::fs::remove_dir_all(p.path().join("runs")).unwrap();
            None
        })
        .expect("a checkpoint in the middle of an epoch");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{said}");
    assert!(said.contains("stopped by SIGINT") && said.contains("run the same command again"), "{said}");
    let status = status_of(&run);
    assert_eq!(status["state"], "interrupted");
    assert!(status["note"].as_str().unwrap().contains("stopped by SIGINT (Ctrl-C) after epoch"), "{status}");
    assert!(!run.join("claim.json").exists(), "an interrupted run releases its claim");
    let (epochs, _) = checkpoint_position(&run).unwrap();
    assert!(epochs < 5, "stopped before the end");
    let summary = std::fs::read_to_string(p.path().join("runs/stopped/summary.csv")).unwrap();
    assert!(summary.contains(",interrupted,"), "{summary}");

    let rerun = p.run(&[&name, "--quiet"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(stderr(&rerun).contains("resumed from its checkpoint"), "{}", stderr(&rerun));
    assert_same_results(&run, &reference);
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_the_last_checkpoint_stays_valid() {
    let p = Project::new(12);
    let name = p.recipe("twice.toml", &cnn_recipe(5));
    let reference = reference_run(&p, &name);
    // the second signal must come after the first was handled and before the run has
    // written its interrupted status; the window is some milliseconds wide
    let run = (0..5)
        .find_map(|_| {
            let mut child = spawn(&p, &[&name, "--quiet"]);
            let run = wait_for_epochs(&p, &mut child, "twice", 1);
            interrupt(&child);
            std::thread::sleep(Duration::from_millis(1));
            interrupt(&child);
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(130));
            if status_of(&run)["state"] == "running" {
                return Some(run);
            }
            // the first signal's orderly stop was done before the second arrived
            std::fs::remove_dir_all(p.path().join("runs")).unwrap();
            None
        })
        .expect("a second Ctrl-C that ended the process at once");
    assert!(run.join("claim.json").exists(), "an immediate exit releases nothing");
    let rerun = p.run(&[&name, "--quiet"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert_same_results(&run, &reference);
}

#[test]
fn a_damaged_checkpoint_is_reported_and_the_run_starts_again() {
    let p = Project::new(6);
    let name = p.recipe("damaged.toml", &cnn_recipe(4));
    let reference = reference_run(&p, &name);
    let mut child = spawn(&p, &[&name, "--quiet"]);
    let run = wait_for_epochs(&p, &mut child, "damaged", 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // another run's checkpoint (other settings: another id) is never loaded
    let other = p.run(&["plan", &name, "--set", "train.learning_rate=0.002"]);
    let other_id = crate::common::stdout(&other)
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("damaged-")).map(str::to_string))
        .unwrap();
    let other_run = p.path().join("runs/damaged").join(&other_id);
    std::fs::create_dir_all(&other_run).unwrap();
    std::fs::copy(run.join("checkpoint.safetensors"), other_run.join("checkpoint.safetensors")).unwrap();
    let out = p.run(&[&name, "--quiet", "--set", "train.learning_rate=0.002"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let own_id = run.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr(&out).contains(&format!("checkpoint is not used, it was written by run {own_id}")),
        "{}",
        stderr(&out)
    );

    std::fs::write(run.join("checkpoint.safetensors"), b"not a checkpoint").unwrap();
    let rerun = p.run(&[&name, "--quiet"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let said = stderr(&rerun);
    assert!(
        said.contains("checkpoint is not used, it cannot be read") && said.contains("training from scratch"),
        "{said}"
    );
    assert_same_results(&run, &reference);
}

/// A safetensors file's header (the JSON after its 8-byte length) and where its tensor
/// data starts.
fn safetensors_header(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, usize) {
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + length]).unwrap(), 8 + length)
}

/// Where in `file` (a safetensors file) each tensor's bytes lie, by name.
fn tensor_regions(file: &Path) -> BTreeMap<String, Range<usize>> {
    let (header, data) = safetensors_header(&std::fs::read(file).unwrap());
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, info)| {
            let at = |i: usize| data + info["data_offsets"][i].as_u64().unwrap() as usize;
            (name, at(0)..at(1))
        })
        .collect()
}

/// Inverts 64 bytes (fewer in a smaller region) in the middle of `region` of `file`, as
/// a failing disk or a bad copy might.
fn flip(file: &Path, region: Range<usize>) {
    let mut bytes = std::fs::read(file).unwrap();
    let from = ((region.start + region.end) / 2).saturating_sub(32).max(region.start);
    for byte in &mut bytes[from..(from + 64).min(region.end)] {
        *byte = !*byte;
    }
    std::fs::write(file, bytes).unwrap();
}

/// Copies the files of `from` (not its folders) into `to`, made afresh.
fn copy_files(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Starts the run of `name` and kills it with SIGKILL once its first epoch is
/// checkpointed; its folder.
fn killed_after_an_epoch(p: &Project, name: &str) -> PathBuf {
    let mut child = spawn(p, &[name, "--quiet"]);
    let run = wait_for_epochs(p, &mut child, name.trim_end_matches(".toml"), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run.join("checkpoint.safetensors").exists(), "killed before the run finished");
    run
}

#[test]
fn flipped_bytes_in_any_part_of_a_checkpoint_are_reported_and_the_run_starts_again() {
    let p = Project::new(6);
    let name = p.recipe("flipped.toml", &cnn_recipe(4));
    let reference = reference_run(&p, &name);
    let run = killed_after_an_epoch(&p, &name);
    let kept = p.path().join("kept");
    copy_files(&run, &kept);
    let regions = tensor_regions(&kept.join("checkpoint.safetensors"));
    let damaged = format!("{}/checkpoint.safetensors is damaged", run.file_name().unwrap().to_string_lossy());
    // a tensor of each kind a checkpoint holds, and its progress record
    for kind in ["model/", "best/", "optimizer/", "radrun/checkpoint.json"] {
        let (tensor, region) = regions
            .iter()
            .find(|(name, _)| name.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} in {:?}", regions.keys()));
        copy_files(&kept, &run);
        flip(&run.join("checkpoint.safetensors"), region.clone());
        let rerun = p.run(&[&name, "--quiet"]);
        let said = stderr(&rerun);
        assert!(rerun.status.success(), "{tensor}: {said}");
        assert!(said.contains(&damaged) && said.contains("training from scratch"), "{tensor}: {said}");
        assert!(!said.contains("resumed from its checkpoint"), "{tensor}: {said}");
        assert_same_results(&run, &reference);
    }
}

#[test]
fn a_checkpoint_without_a_checksum_resumes_and_says_it_was_not_checked() {
    // as a radrun before checksums wrote it: no metadata in the header
    let p = Project::new(6);
    let name = p.recipe("older.toml", &cnn_recipe(4));
    let reference = reference_run(&p, &name);
    let run = killed_after_an_epoch(&p, &name);
    let file = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let (mut header, data) = safetensors_header(&bytes);
    assert!(header.remove("__metadata__").is_some(), "radrun writes its checksum there");
    let mut text = serde_json::to_vec(&header).unwrap();
    // the format pads its header to a multiple of 8 bytes
    text.resize(text.len().next_multiple_of(8), b' ');
    let older = [&(text.len() as u64).to_le_bytes()[..], &text[..], &bytes[data..]].concat();
    std::fs::write(&file, older).unwrap();
    let rerun = p.run(&[&name, "--quiet"]);
    let said = stderr(&rerun);
    assert!(rerun.status.success(), "{said}");
    assert!(said.contains("resumed from its checkpoint") && said.contains("it has no checksum"), "{said}");
    assert_same_results(&run, &reference);
}

#[test]
fn predict_and_export_refuse_weights_with_flipped_bytes_and_name_the_file() {
    let p = Project::new(3);
    let name = p.recipe("weights.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "weights");
    // the weights predict and export read (train.keep: the best epoch's)
    let best = run.join("best.safetensors");
    let (_, largest) = tensor_regions(&best).into_iter().max_by_key(|(_, region)| region.len()).unwrap();
    flip(&best, largest);
    let run_arg = run.to_str().unwrap();
    let commands: [&[&str]; 2] = [
        &["predict", run_arg, "data/Test", "--out", "p.csv"],
        &["export", run_arg, "--format", "safetensors", "--out", "w.safetensors"],
    ];
    for args in commands {
        let refused = p.run(args);
        let said = stderr(&refused);
        // exit 3: the environment (a file on disk), not what the user typed
        assert_eq!(refused.status.code(), Some(3), "{said}");
        assert!(said.contains(&format!("{} is damaged", best.display())), "{said}");
        assert!(said.contains("copy it again from a good copy, or train the run that wrote it again"), "{said}");
    }
    assert!(!p.path().join("p.csv").exists() && !p.path().join("w.safetensors").exists());
}
