//! Training runs end to end on tiny data: the files a run leaves and their
//! columns, skip and --force, failures recorded while the sweep goes on, unreadable
//! files under both policies, determinism on the CPU, JSON-lines progress, run folders
//! orphaned by an edited recipe listed by `radrun status` and removed by `radrun clean`.

use std::path::{Path, PathBuf};

use crate::common::{Project, TINY, only_run, stderr, stdout};

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    (header, rows)
}

fn status(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap()
}

#[test]
fn a_run_leaves_every_file_then_is_skipped_then_forced() {
    let p = Project::new(4);
    let name = p.recipe("tiny.toml", TINY);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "tiny");
    for file in [
        "recipe.toml",
        "status.json",
        "metrics.csv",
        "evaluation.json",
        "per_class.csv",
        "confusion_matrix.csv",
        "predictions.csv",
        "best.safetensors",
        "last.safetensors",
        "model_summary.txt",
        "data_summary.txt",
        "data_summary.json",
        "train.log",
    ] {
        assert!(run.join(file).is_file(), "missing {file} in {}", run.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // the resolved recipe is itself a valid recipe with every default written out
    let resolved: toml::Table = std::fs::read_to_string(run.join("recipe.toml")).unwrap().parse().unwrap();
    let phase = &resolved["train"]["phases"][0];
    assert_eq!(phase["optimizer"].as_str(), Some("adam"));
    assert_eq!(phase["learning_rate"].as_float(), Some(0.001));
    assert_eq!(phase["epochs"].as_integer(), Some(2));
    assert_eq!(resolved["train"]["batch_size"].as_integer(), Some(4));
    assert_eq!(resolved["model"]["dropout"].as_float(), Some(0.5));
    let st = status(&run);
    assert_eq!(st["state"], "done");
    assert!(st["libtorch_version"].as_str().unwrap().starts_with("2.11.0"));
    assert!(st["device"].as_str().unwrap().starts_with("cpu"));
    let (header, rows) = csv_rows(&run.join("metrics.csv"));
    assert_eq!(
        header,
        [
            "epoch",
            "phase",
            "lr",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
            "images_per_second",
            "data_wait_seconds"
        ]
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], "2");
    let (header, rows) = csv_rows(&run.join("predictions.csv"));
    assert_eq!(&header[..3], ["file", "true_class", "predicted_class"]);
    assert_eq!(header.len(), 3 + 6);
    assert!(header.contains(&"p_pneumothorax".to_string()));
    assert_eq!(rows.len(), 12, "2 test images x 6 classes");
    let sum: f64 = rows[0][3..].iter().map(|v| v.parse::<f64>().unwrap()).sum();
    // a softmax: float32 probabilities that sum to one within 7 float32 roundings (4e-7:
    // five additions of the exponentials, the reciprocal of their sum, each product;
    // the exponentials' own errors cancel), written in full and read back exactly; 1e-4
    // is far above that and far below the 1e-3 and more by which per-class sigmoids miss
    // one (rigor.rs)
    assert!((sum - 1.0).abs() < 1e-4);
    let (header, rows) = csv_rows(&run.join("per_class.csv"));
    assert_eq!(header, ["class", "precision", "recall", "specificity", "f1", "support", "roc_auc"]);
    assert_eq!(rows.len(), 6 + 2);
    let evaluation: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evaluation.json")).unwrap()).unwrap();
    for key in ["accuracy", "balanced_accuracy", "per_class", "macro_avg", "weighted_avg", "confusion"] {
        assert!(evaluation.get(key).is_some(), "evaluation.json lacks {key}");
    }
    let (header, rows) = csv_rows(&p.path().join("runs/tiny/summary.csv"));
    assert_eq!(&header[..4], ["rank", "run_id", "status", "evaluated_epoch"]);
    assert!(header.contains(&"test_accuracy".to_string()) && header.contains(&"val_loss".to_string()));
    assert_eq!(rows[0][2], "done");

    let again = p.run(&[&name]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("skipped (done; --force retrains it)"), "{}", stderr(&again));
    let started = status(&run)["started"].clone();
    let first_log = std::fs::read_to_string(run.join("train.log")).unwrap();
    let forced = p.run(&[&name, "--force", "--quiet"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(status(&run)["started"], started, "--force retrains");
    // the earlier attempt's log is kept beside the new one, not erased
    assert_eq!(std::fs::read_to_string(run.join("train.log.1")).unwrap(), first_log);
    let second_log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(second_log.contains("started by process") && second_log != first_log, "{second_log}");
    let again = p.run(&[&name, "--force", "--quiet"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(run.join("train.log.2")).unwrap(), second_log);
    assert_eq!(std::fs::read_to_string(run.join("train.log.1")).unwrap(), first_log);
}

#[test]
fn unreadable_images_are_skipped_and_reported_or_fail_the_run_naming_the_file() {
    let p = Project::new(3);
    std::fs::write(p.path().join("data/Train/normal/broken.png"), b"not a png at all").unwrap();
    let name = p.recipe("skip.toml", &TINY.replace("root = \"data\"", "root = \"data\"\non_unreadable = \"skip\""));
    let out = p.run(&[&name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.png"), "a warning names the file:\n{}", stderr(&out));
    let run = only_run(&p, "skip");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap();
    assert!(summary["skipped"][0]["path"].as_str().unwrap().ends_with("broken.png"), "{summary}");

    let name = p.recipe("strict.toml", TINY);
    let out = p.run(&[&name]);
    assert_eq!(out.status.code(), Some(1), "a failed run gives exit code 1:\n{}", stderr(&out));
    let run = only_run(&p, "strict");
    let st = status(&run);
    assert_eq!(st["state"], "failed");
    assert!(st["error"].as_str().unwrap().contains("broken.png"), "{st}");
    let (_, rows) = csv_rows(&p.path().join("runs/strict/summary.csv"));
    assert_eq!(rows[0][2], "failed");
}

#[test]
fn a_failing_run_does_not_stop_the_sweep() {
    // the failure is certain (an unreadable image under "error"), the exit code exact
    let p = Project::new(3);
    std::fs::write(p.path().join("data/Train/normal/broken.png"), b"not a png at all").unwrap();
    let text = format!("{TINY}\n[sweep]\n\"data.on_unreadable\" = [\"error\", \"skip\"]\n");
    let name = p.recipe("sweep.toml", &text);
    let out = p.run(&[&name, "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "a failed run gives exit code 1:\n{}", stderr(&out));
    assert!(stderr(&out).contains("1 of 2 run(s) failed"), "{}", stderr(&out));
    let (header, rows) = csv_rows(&p.path().join("runs/sweep/summary.csv"));
    assert_eq!(header[2..4], ["data.on_unreadable", "status"]);
    let mut states: Vec<(&str, &str)> = rows.iter().map(|r| (r[2].as_str(), r[3].as_str())).collect();
    states.sort();
    assert_eq!(states, [("error", "failed"), ("skip", "done")], "the sweep went on after the failure");
}

#[test]
fn the_same_recipe_and_seed_give_the_same_numbers_on_the_cpu() {
    let p = Project::new(3);
    let name = p.recipe("same.toml", TINY);
    let first = p.run(&[&name, "--quiet", "--runs", "a"]);
    let second = p.run(&[&name, "--quiet", "--runs", "b"]);
    assert!(first.status.success() && second.status.success());
    let run_a =
        std::fs::read_dir(p.path().join("a/same")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let run_b = p.path().join("b/same").join(run_a.file_name().unwrap());
    let strip = |path: &Path| -> Vec<Vec<String>> { csv_rows(path).1.into_iter().map(|r| r[..7].to_vec()).collect() };
    assert_eq!(strip(&run_a.join("metrics.csv")), strip(&run_b.join("metrics.csv")));
    assert_eq!(csv_rows(&run_a.join("predictions.csv")), csv_rows(&run_b.join("predictions.csv")));
}

#[test]
fn json_mode_prints_one_event_per_line() {
    let p = Project::new(3);
    let name = p.recipe("json.toml", TINY);
    let out = p.run(&[&name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.iter().filter(|k| **k == "epoch").count(), 2);
    assert_eq!(kinds.last(), Some(&"finished"));
    let epoch = events.iter().find(|e| e["event"] == "epoch").unwrap();
    assert!(epoch["val_loss"].is_number() && epoch["images_per_second"].is_number());
}

/// A copy of a few cases of the example lung set in `<project>/lungs`.
pub(crate) fn lungs(p: &Project) {
    let source = crate::common::repo().join("datasets.example/lungs");
    for split in ["Train", "Test"] {
        for folder in ["Images", "Segmentation"] {
            let target = p.path().join("lungs").join(split).join(folder);
            std::fs::create_dir_all(&target).unwrap();
            let mut files: Vec<_> =
                std::fs::read_dir(source.join(split).join(folder)).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.iter().take(if split == "Train" { 8 } else { 4 }) {
                std::fs::copy(f, target.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

pub(crate) const SEGMENTATION: &str = r#"
[data]
root = "lungs"
task = "segmentation"
image_size = [32, 32]
[model]
kind = "unet"
initial_features = 4
depth = 2
upsampling = "transposed"
[train]
epochs = 2
batch_size = 4
loss = "bce_dice"
"#;

#[test]
fn a_segmentation_run_leaves_masks_overlays_and_metrics() {
    let p = Project::new(1);
    lungs(&p);
    let name = p.recipe("seg.toml", SEGMENTATION);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "seg");
    let (header, rows) = csv_rows(&run.join("metrics.csv"));
    assert!(header.contains(&"val_dice".to_string()) && header.contains(&"val_iou".to_string()), "{header:?}");
    assert_eq!(rows.len(), 2);
    let (header, rows) = csv_rows(&run.join("segmentation_metrics.csv"));
    assert_eq!(header, ["file", "label", "dice", "iou", "sensitivity", "precision", "hd95_pixels", "hd95_mm"]);
    assert_eq!(rows.len(), 4, "one row per test image and foreground label");
    let masks = std::fs::read_dir(run.join("predictions")).unwrap().count();
    assert_eq!(masks, 8, "a mask and an overlay per test image");
    let overlay = image::open(
        std::fs::read_dir(run.join("predictions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("_overlay.png"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!((overlay.width(), overlay.height()), (32, 32));
    let evaluation: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(evaluation[0]["label"], "foreground");
    assert!(evaluation[0]["dice"]["median"].is_number());
    let st = status(&run);
    assert!(st["test"]["dice_mean"].is_number(), "{st}");
    crate::manuscript::check_methods(&p.path().join("runs/seg"));
}

#[test]
fn the_example_data_generator_writes_the_committed_bytes() {
    let python = radrun_data::testing::venv().map(|v| v.join("bin/python"));
    let Some(python) = python else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let repo = crate::common::repo();
    let status = std::process::Command::new(python)
        .arg(repo.join("datasets.example/generate.py"))
        .arg(out_dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let mut count = 0;
    for entry in radrun_data::testing::files_under(out_dir.path()) {
        let relative = entry.strip_prefix(out_dir.path()).unwrap();
        let committed = std::fs::read(repo.join("datasets.example").join(relative))
            .unwrap_or_else(|_| panic!("{} is not committed", relative.display()));
        assert!(std::fs::read(&entry).unwrap() == committed, "{} differs from the committed file", relative.display());
        count += 1;
    }
    assert!(count > 1000, "{count} files");
}

#[test]
fn transfer_phases_run_from_imported_weights_and_missing_weights_say_where_to_put_them() {
    let p = Project::new(3);
    let cache = p.path().join("cache");
    let env = [("RADRUN_CACHE", cache.to_str().unwrap())];
    let recipe = format!(
        "{}\n[[train.phases]]\nname = \"frozen\"\nepochs = 1\noptimizer = \"adam\"\ntrainable = \"head\"\n\
         [[train.phases]]\nname = \"fine_tune\"\nepochs = 1\noptimizer = \"rmsprop\"\nlearning_rate = 1e-4\ntrainable = \"tutorial\"\n",
        TINY.replace(
            "kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16",
            "kind = \"transfer\"\nbackbone = \"resnet18\"\nweights = \"imagenet\"\nhead_units = 16"
        )
        .replace("epochs = 2\n", "")
    );
    let name = p.recipe("transfer.toml", &recipe);
    let missing = crate::common::radrun_env(p.path(), &["plan", &name], &env);
    assert_eq!(missing.status.code(), Some(2));
    let message = stderr(&missing);
    let expected_file = cache.join("weights/resnet18-imagenet.safetensors");
    assert!(message.contains(&expected_file.display().to_string()), "{message}");
    assert!(
        message.contains("radrun weights fetch resnet18")
            && message.contains("https://download.pytorch.org/models/resnet18-f37072fd.pth"),
        "{message}"
    );

    let Some(reference) = radrun_data::testing::reference_dir() else { return };
    let pth = reference.join("backbones/resnet18.pth");
    let imported = crate::common::radrun_env(p.path(), &["weights", "import", "resnet18", pth.to_str().unwrap()], &env);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(expected_file.is_file());
    let out = crate::common::radrun_env(p.path(), &[&name, "--quiet"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "transfer");
    let (header, rows) = csv_rows(&run.join("metrics.csv"));
    assert_eq!(header[1], "phase");
    assert_eq!(
        rows.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect::<Vec<_>>(),
        [("1", "frozen"), ("2", "fine_tune")]
    );
    assert!(std::fs::read_to_string(run.join("train.log")).unwrap().contains("backbone weights loaded from"));
    // the methods of a transfer run: where its backbone started, and both phases
    crate::manuscript::check_methods(&p.path().join("runs/transfer"));
    let methods = std::fs::read_to_string(p.path().join("runs/transfer/methods.md")).unwrap();
    for fact in [
        "Its backbone started from the ImageNet weights in radrun's cache: the official file published at \
         https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "1 epochs of adam at learning rate 0.001 (constant schedule, trainable: head), then 1 epochs of rmsprop at \
         learning rate 0.0001",
    ] {
        assert!(methods.contains(fact), "{fact}: {methods}");
    }
}

/// Rewrites the masks of the lung copy: each foreground pixel gets
/// `label(split, file index, column, width)`.
fn relabel(p: &Project, label: impl Fn(&str, usize, u32, u32) -> u8) {
    for split in ["Train", "Test"] {
        let folder = p.path().join("lungs").join(split).join("Segmentation");
        let mut files: Vec<_> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for (index, path) in files.iter().enumerate() {
            let mut mask = image::open(path).unwrap().to_luma8();
            let width = mask.width();
            for (x, _, v) in mask.enumerate_pixels_mut() {
                v.0[0] = if v.0[0] == 0 { 0 } else { label(split, index, x, width) };
            }
            mask.save(path).unwrap();
        }
    }
}

#[test]
fn label_masks_train_one_map_per_structure() {
    // left and right lung as labels 1 and 2: softmax output, cross-entropy, per-label rows
    let p = Project::new(1);
    lungs(&p);
    relabel(&p, |_, _, x, width| if x < width / 2 { 1 } else { 2 });
    let name = p.recipe("labels.toml", &SEGMENTATION.replace("loss = \"bce_dice\"", "loss = \"auto\""));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "labels");
    let (_, rows) = csv_rows(&run.join("segmentation_metrics.csv"));
    assert_eq!(rows.len(), 8, "two labels x four test images");
    assert!(rows.iter().any(|r| r[1] == "label 2"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["classes"], serde_json::json!(["background", "label 1", "label 2"]));
}

#[test]
fn a_missing_mask_names_the_image_and_the_expected_mask() {
    let p = Project::new(1);
    lungs(&p);
    let masks = p.path().join("lungs/Train/Segmentation");
    let first = std::fs::read_dir(&masks).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    std::fs::remove_file(&first).unwrap();
    let name = p.recipe("missing.toml", SEGMENTATION);
    let out = p.run(&["plan", &name]);
    assert_eq!(out.status.code(), Some(2), "a dataset layout error is an input error");
    let message = stderr(&out);
    let stem = first.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        message.contains(&format!("Images/{stem}")) && message.contains(&format!("Segmentation/{stem}.png")),
        "{message}"
    );
}

#[test]
fn a_label_seen_only_in_test_masks_is_trained_for_and_scored() {
    // labels were taken from the training masks only
    let p = Project::new(1);
    lungs(&p);
    relabel(&p, |split, index, x, width| if split == "Test" && index == 0 && x >= width / 2 { 2 } else { 1 });
    let name = p.recipe("labels.toml", &SEGMENTATION.replace("loss = \"bce_dice\"", "loss = \"auto\""));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "labels");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["classes"], serde_json::json!(["background", "label 1", "label 2"]));
    let (_, rows) = csv_rows(&run.join("segmentation_metrics.csv"));
    assert_eq!(rows.iter().filter(|r| r[1] == "label 2").count(), 4, "label 2 is scored on every test image");
}

/// Two runs of one epoch on 16 x 16 images, one per learning rate of `rates` (a TOML list).
fn learning_rates(rates: &str) -> String {
    TINY.replace("image_size = [32, 32]", "image_size = [16, 16]").replace("epochs = 2", "epochs = 1")
        + &format!("\n[sweep]\n\"train.learning_rate\" = {rates}\n")
}

/// A run folder `id` beside `run` holding a copy of its status.json, renamed to `id` and
/// recorded as trained by `command_line`.
fn copied_run(run: &Path, id: &str, command_line: &[&str]) -> PathBuf {
    let mut copy = status(run);
    copy["run_id"] = id.into();
    copy["provenance"]["command_line"] = serde_json::json!(command_line);
    let folder = run.with_file_name(id);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("status.json"), serde_json::to_vec(&copy).unwrap()).unwrap();
    folder
}

#[test]
fn a_run_orphaned_by_an_edited_sweep_is_listed_and_cleaned_and_nothing_else() {
    // the sweep's 0.002 becomes 0.003: its run gets a new id and the old folder is left
    let p = Project::new(2);
    let name = p.recipe("edited.toml", &learning_rates("[0.001, 0.002]"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = p.path().join("runs/edited");
    let run_of = |rate: &str| -> PathBuf {
        let mark = format!("learning_rate={rate}-");
        let found = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path());
        found.filter(|path| path.is_dir()).find(|path| path.to_string_lossy().contains(&mark)).expect("its folder")
    };
    let (kept, orphan) = (run_of("0.001"), run_of("0.002"));
    let orphan_id = orphan.file_name().unwrap().to_str().unwrap().to_string();
    p.recipe(&name, &learning_rates("[0.001, 0.003]"));
    // beside it: a folder of the user's (no run folder), an orphan a live process of another
    // machine trains in, and one trained with a --set flag this clean does not give
    let notes = folder.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "compare with 0.002").unwrap();
    let claimed = copied_run(&orphan, "edited-learning_rate=0.009-0000aaaa", &["radrun", &name]);
    let now = jiff::Timestamp::now().to_string();
    let claim =
        serde_json::json!({"host": "node-17.cluster", "pid": 4242, "token": "t", "started": now, "heartbeat": now});
    std::fs::write(claimed.join("claim.json"), serde_json::to_vec(&claim).unwrap()).unwrap();
    let with_set = ["radrun", name.as_str(), "--set", "train.epochs=3"];
    let variant = copied_run(&orphan, "edited-learning_rate=0.008-0000bbbb", &with_set);

    let shown = p.run(&["status", &name]);
    assert_eq!(shown.status.code(), Some(4), "the 0.003 run is pending:\n{}", stdout(&shown));
    let text = stdout(&shown);
    let line = text.lines().find(|l| l.contains(&orphan_id)).unwrap_or_else(|| panic!("no orphan in:\n{text}"));
    assert!(line.contains("done") && line.contains("learning_rate was 0.002"), "{line}");
    assert!(text.contains("3 orphaned run folder(s)"), "{text}");
    assert!(text.contains("`radrun clean edited.toml --orphans` removes them"), "{text}");
    assert!(text.contains("node-17.cluster") && text.contains("--set train.epochs=3"), "{text}");
    assert!(!text.contains("notes"), "a folder that is no run folder is no orphan:\n{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&p.run(&["status", &name, "--json"]))).unwrap();
    let orphans = json["orphans"].as_array().unwrap();
    let listed: Vec<&str> = orphans.iter().map(|o| o["run_id"].as_str().unwrap()).collect();
    let copies = ["edited-learning_rate=0.008-0000bbbb", "edited-learning_rate=0.009-0000aaaa"];
    assert_eq!(listed, [orphan_id.as_str(), copies[0], copies[1]]);
    assert_eq!(orphans[0]["state"], "done");
    let changed = orphans[0]["differences"].as_array().unwrap();
    assert!(
        changed.iter().any(|d| d["key"].as_str().unwrap().ends_with("learning_rate") && d["was"] == "0.002"),
        "{changed:?}"
    );
    assert!(orphans[0]["kept_because"].is_null() && orphans[1]["kept_because"].is_string());

    // --dry-run lists and removes nothing
    let dry = p.run(&["clean", &name, "--orphans", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains(&format!("would remove runs/edited/{orphan_id} (done;")), "{}", stdout(&dry));
    assert!(stdout(&dry).contains("would keep runs/edited/edited-learning_rate=0.009"), "{}", stdout(&dry));
    let todo = notes.join("todo.txt");
    let stay = [&kept, &claimed, &variant, &todo];
    assert!(orphan.exists() && stay.iter().all(|path| path.exists()), "--dry-run removes nothing");

    // the orphan goes; the current run, the live process's folder, the variant's and the
    // user's folder stay, and nothing is left half removed
    let cleaned = p.run(&["clean", &name, "--orphans"]);
    assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    assert!(stdout(&cleaned).contains("1 removed, 2 kept"), "{}", stdout(&cleaned));
    assert!(!orphan.exists() && stay.iter().all(|path| path.exists()), "{}", stdout(&cleaned));
    assert!(kept.join("status.json").exists() && claimed.join("claim.json").exists());
    let left: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().ends_with(".removing")), "{left:?}");

    // without --orphans nothing is removed: the flag says what to remove
    let refused = p.run(&["clean", &name]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--orphans"), "{}", stderr(&refused));
}
