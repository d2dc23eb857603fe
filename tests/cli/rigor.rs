//! Experiments a paper can trust: cross-validation grouped by patient over
//! folds and seeds, the aggregate tables, bootstrap intervals, provenance, the leakage
//! check, sweep sizes and duplicate runs, and no identifying data in any output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use radrun_data::testing::files_under;
use sha2::{Digest, Sha256};

use crate::common::{Project, TINY, only_run, radrun, refused, repo, stderr, stdout};

fn csv_table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_string)).collect()).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn number(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap_or_else(|_| panic!("{key} = {:?}", row[key]))
}

#[test]
fn cross_validation_over_folds_and_seeds_leaves_tables_a_paper_can_use() {
    let out_dir = tempfile::tempdir().unwrap();
    let runs = out_dir.path().join("runs");
    let recipe = repo().join("recipes/chest_6class_cv.toml");
    let out = radrun(
        &repo(),
        &[
            recipe.to_str().unwrap(),
            "--set",
            "train.epochs=1",
            "--set",
            "data.image_size=[16, 16]",
            "--set",
            "eval.bootstrap=300",
            "--runs",
            runs.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = runs.join("chest_6class_cv");

    // one row per run in summary.csv; aggregate.csv: one configuration, 15 runs, and its
    // mean and SD are those of the 15 rows
    let summary = csv_table(&folder.join("summary.csv"));
    assert_eq!(summary.len(), 15);
    let accuracies: Vec<f64> = summary.iter().map(|r| number(r, "test_accuracy")).collect();
    let mean = accuracies.iter().sum::<f64>() / 15.0;
    let sd = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 14.0).sqrt();
    let aggregate = csv_table(&folder.join("aggregate.csv"));
    assert_eq!(aggregate.len(), 1);
    assert_eq!((aggregate[0]["runs"].as_str(), aggregate[0]["planned"].as_str()), ("15", "15"));
    // float64 sums of 15 values <= 1 in other orders: 15 roundings of 1.1e-16 at most,
    // and the SD's square root adds one; 1e-12 is far above that and far below a wrong
    // divisor (n for n - 1 moves the SD by 3 %)
    assert!((number(&aggregate[0], "test_accuracy_mean") - mean).abs() < 1e-12);
    assert!((number(&aggregate[0], "test_accuracy_sd") - sd).abs() < 1e-12);
    // exactly: the smallest of the values themselves, written in full
    let min = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(number(&aggregate[0], "test_accuracy_min"), min);
    let markdown = std::fs::read_to_string(folder.join("summary.md")).unwrap();
    assert!(markdown.contains(&format!("| 15 | {mean:.3} ± {sd:.3} |")), "{markdown}");
    assert!(markdown.contains("5 folds x 3 seeds"), "{markdown}");
    let latex = std::fs::read_to_string(folder.join("summary.tex")).unwrap();
    assert!(latex.contains(&format!("15 & {mean:.3} $\\pm$ {sd:.3} &")), "{latex}");
    assert!(latex.contains("\\begin{tabular}") && latex.contains("chest\\_6class\\_cv"), "{latex}");
    crate::manuscript::check_methods(&folder);
    let methods = std::fs::read_to_string(folder.join("methods.md")).unwrap();
    assert!(methods.contains("cut into 5 folds") && methods.contains("`train.seed` in 1, 2, 3"), "{methods}");

    let run_dirs: Vec<PathBuf> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(run_dirs.len(), 15);
    let recipe_hash: String =
        Sha256::digest(std::fs::read(&recipe).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    let mut fingerprints = BTreeSet::new();
    let mut validated: BTreeMap<String, usize> = BTreeMap::new();
    for dir in &run_dirs {
        let status = json(&dir.join("status.json"));
        let provenance = &status["provenance"];
        assert_eq!(provenance["recipe_sha256"], recipe_hash.as_str());
        assert!(provenance["command_line"].as_array().unwrap().iter().any(|a| a == "eval.bootstrap=300"));
        assert_eq!(provenance["dataset"]["files"], 1102, "every image of Train and Test");
        fingerprints.insert(provenance["dataset"]["sha256"].to_string());
        let (accuracy, ci) = (status["test"]["accuracy"].as_f64().unwrap(), &status["test_intervals"]["accuracy"]);
        assert!(ci["lower"].as_f64().unwrap() <= accuracy && accuracy <= ci["upper"].as_f64().unwrap(), "{status}");

        // split.csv: validation patients never train; the fold of the run is the one validated
        let rows = csv_table(&dir.join("split.csv"));
        assert_eq!(rows.len(), 1102);
        let groups = |split: &str| -> BTreeSet<String> {
            rows.iter().filter(|r| r["split"] == split).map(|r| r["group"].clone()).collect()
        };
        assert!(groups("train").is_disjoint(&groups("validation")), "{}", dir.display());
        assert!(groups("train").is_disjoint(&groups("test")));
        let fold = status["run_id"].as_str().unwrap().split("-fold=").nth(1).unwrap()[..1].to_string();
        assert!(rows.iter().filter(|r| r["split"] == "validation").all(|r| r["fold"] == fold));
        if status["run_id"].as_str().unwrap().contains("seed=1-") {
            for r in rows.iter().filter(|r| r["split"] == "validation") {
                *validated.entry(r["file"].clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(fingerprints.len(), 1, "one dataset, one fingerprint");
    assert_eq!(validated.len(), 861, "the 5 folds validate every training image");
    assert!(validated.values().all(|&n| n == 1), "each exactly once");

    // radrun compare: two seeds of fold 1 on the same 241 test images of 96 patients
    let pick = |tag: &str| run_dirs.iter().find(|d| d.to_string_lossy().contains(tag)).unwrap().to_str().unwrap();
    let (a, b) = (pick("seed=1-fold=1-"), pick("seed=2-fold=1-"));
    let out = radrun(&repo(), &["compare", a, b, "--resamples", "300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Same 241 test images; 300 paired bootstrap resamples of 96 patients"),
        "{}",
        stdout(&out)
    );
    let out = radrun(&repo(), &["compare", a, a, "--resamples", "300", "--json"]);
    let same: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // exactly: a run against itself, every paired difference is x - x = 0
    for d in same["differences"].as_array().unwrap() {
        assert_eq!((d["difference"].as_f64(), d["p_value"].as_f64()), (Some(0.0), Some(1.0)), "{d}");
    }
    assert_eq!(same["auc_tests"].as_array().unwrap().len(), 6);
    let out = radrun(&repo(), &["compare", a, out_dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("predictions.csv: cannot be read"), "{}", stderr(&out));

    // radrun reproduce: the same numbers on the CPU (tolerance 0: the run again, by this
    // binary on this machine with the thread count its recipe resolved to, on kernels that
    // are deterministic for it; see resume::assert_same_results); a tampered record is
    // caught
    let out = radrun(&repo(), &["reproduce", b, "--quiet"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("test_accuracy") && table.contains("dataset: the same files"), "{table}");
    assert!(!table.contains("differs"), "{table}");
    let copy = out_dir.path().join("tampered");
    std::fs::create_dir(&copy).unwrap();
    for file in ["recipe.toml", "status.json"] {
        std::fs::copy(Path::new(b).join(file), copy.join(file)).unwrap();
    }
    let mut status = json(&copy.join("status.json"));
    status["test"]["accuracy"] = serde_json::json!(0.999);
    std::fs::write(copy.join("status.json"), serde_json::to_vec(&status).unwrap()).unwrap();
    let out = radrun(&repo(), &["reproduce", copy.to_str().unwrap(), "--quiet"]);
    // its own exit code (5), not the environment's (3): the machine is fine, the result is not
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stdout(&out).contains("<- differs") && stderr(&out).contains("1 metric(s) differ by more than 0"));

    // no identifying data: PatientName ("Synthetic^<id>") nowhere; the patient ids (also
    // in the example's file names) only inside file paths
    let patients: BTreeSet<String> = csv_table(&repo().join("datasets.example/chest6/patients.csv"))
        .into_iter()
        .map(|r| r["patient_id"].clone())
        .collect();
    for file in files_under(&folder) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".safetensors") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).to_string();
        assert!(!text.contains("Synthetic^"), "PatientName in {}", file.display());
        if name == "split.csv" {
            for row in csv_table(&file) {
                assert!(!patients.contains(&row["group"]) && row["group"].len() == 16, "group {}", row["group"]);
            }
        } else if !["predictions.csv", "gallery.csv", "report.html"].contains(&name.as_str()) {
            // those name the test files, whose names are the user's (here with patient ids)
            assert!(!text.contains("SYN-T"), "a patient id in {}", file.display());
        }
    }
}

#[test]
fn an_ungrouped_split_of_the_example_is_caught_as_leakage() {
    let out = radrun(&repo(), &["plan", "recipes/chest_6class.toml", "--set", "data.group_by=\"none\""]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("leakage:") && message.contains("same DICOM PatientID"), "{message}");
    assert!(message.contains("(train) and") && message.contains("(validation)"), "{message}");
    assert!(message.contains("data.allow_leakage = true"), "{message}");
    assert!(!message.contains("Synthetic^"), "{message}");
    // grouped (the default: by DICOM PatientID) it plans
    let out = radrun(&repo(), &["plan", "recipes/chest_6class.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("grouped by"), "{}", stdout(&out));
}

#[test]
fn seeds_repeat_runs_and_equal_values_make_one_run() {
    let p = Project::new(3);
    let text = format!("{TINY}\n[sweep]\n\"train.learning_rate\" = [0.001, 1e-3, \"auto\"]\nseeds = [1, 2]\n");
    let name = p.recipe("recipe.toml", &text);
    let out = p.run(&["plan", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.contains("2 run(s)") && plan.contains("train.seed"), "{plan}");
    assert!(plan.contains("-seed=1-") && plan.contains("-seed=2-"), "{plan}");
}

#[test]
fn sweep_size_and_folds_are_checked_before_expanding() {
    let p = Project::new(3);
    let values: Vec<String> = (1..=1000).map(|v| v.to_string()).collect();
    let text = format!(
        "{TINY}\n[sweep]\n\"train.epochs\" = [{0}]\n\"model.dense_units\" = [{0}]\n\"train.seed\" = [{0}]\n",
        values.join(", ")
    );
    let message = refused(&p, &text, &[]);
    assert!(
        message.contains(
            "the sweep makes 1000000000 runs (model.dense_units: 1000 x train.epochs: 1000 x train.seed: 1000)"
        ),
        "{message}"
    );
    assert!(message.contains("sweep.max_runs` = 10000"), "{message}");
    let message = refused(&p, &format!("{TINY}\n[split]\nfolds = 3\nfold = [1, 5]\n"), &[]);
    assert!(message.contains("recipe.toml:") && message.contains("fold 5 does not exist"), "{message}");
    let message = refused(&p, &format!("{TINY}\n[split]\nfolds = 1\n"), &[]);
    assert!(message.contains("split.folds") && message.contains("between 2 and 100"), "{message}");
}

#[test]
fn random_search_plans_are_the_same_every_time_and_in_any_key_order() {
    let p = Project::new(3);
    let draws = [
        "\"train.learning_rate\" = { log_uniform = [1e-5, 1e-2] }",
        "\"model.dropout\" = { uniform = [0.2, 0.6] }",
        "\"model.dense_units\" = { int = [8, 64] }",
        "\"train.optimizer\" = { choice = [\"adam\", \"sgd\"] }",
    ];
    let plan_of = |lines: &[&str]| {
        let text = format!("{TINY}\n[sweep.random]\ntrials = 6\nseed = 7\n{}\n", lines.join("\n"));
        let name = p.recipe("random.toml", &text);
        let out = p.run(&["plan", &name]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let first = plan_of(&draws);
    assert!(first.contains("random.toml: 6 run(s)"), "{first}");
    let drawn = format!("{TINY}\n[sweep.random]\ntrials = 2\n{}\n", draws[0]);
    let message = refused(&p, &drawn, &["--set", "train.learning_rate=0.1"]);
    assert!(message.contains("a --set flag cannot override a sweep"), "{message}");
    let mut reversed = draws.to_vec();
    reversed.reverse();
    assert_eq!(plan_of(&reversed), first, "key order does not matter");
    assert_eq!(plan_of(&draws), first, "seeded");
    // every drawn value inside its range, rates rounded to 4 significant digits
    for line in first.lines().filter(|l| l.trim_start().starts_with("random-")) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let (units, dropout, rate): (i64, f64, f64) =
            (cells[1].parse().unwrap(), cells[2].parse().unwrap(), cells[3].parse().unwrap());
        assert!((8..=64).contains(&units) && (0.2..=0.6).contains(&dropout) && (1e-5..=1e-2).contains(&rate), "{line}");
        assert!(cells[3].trim_start_matches(['0', '.']).len() <= 4, "{line}");
        assert!(["adam", "sgd"].contains(&cells[4]), "{line}");
    }
    let message = refused(
        &p,
        &format!("{TINY}\n[sweep.random]\ntrials = 3\n\"train.learning_rate\" = {{ log_uniform = [0, 1e-2] }}\n"),
        &[],
    );
    assert!(message.contains("log_uniform needs [low, high] with 0 < low < high"), "{message}");
}

#[test]
fn a_two_class_task_reports_its_validation_threshold_with_wilson_intervals() {
    let p = Project::new(8);
    for class in ["cardiomegaly", "consolidation", "pleural_effusion", "pneumothorax"] {
        for split in ["Train", "Test"] {
            std::fs::remove_dir_all(p.path().join("data").join(split).join(class)).unwrap();
        }
    }
    let name =
        p.recipe("binary.toml", &format!("{TINY}\n[eval]\nthreshold = {{ sensitivity = 0.9 }}\nbootstrap = 100\n"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "binary");
    let point = json(&run.join("operating_point.json"));
    assert_eq!(point["positive_class"], "nodule", "the class that is not \"normal\"");
    assert_eq!(point["rule"]["sensitivity"], 0.9);
    let threshold = point["threshold"].as_f64().unwrap();
    // the threshold applied to predictions.csv gives the recorded counts
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for row in csv_table(&run.join("predictions.csv")) {
        match (number(&row, "p_nodule") >= threshold, row["true_class"] == "nodule") {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let count = |k: &str| point[k].as_u64().unwrap();
    assert_eq!(
        (count("true_positives"), count("false_positives"), count("true_negatives"), count("false_negatives")),
        (tp, fp, tn, fn_)
    );
    let status = json(&run.join("status.json"));
    assert_eq!(status["test"]["threshold"].as_f64().unwrap(), threshold);
    let specificity = status["test"]["threshold_specificity"].as_f64().unwrap();
    assert_eq!(specificity, tn as f64 / (tn + fp) as f64);
    let ci = &status["test_intervals"]["threshold_specificity"];
    assert!(ci["lower"].as_f64().unwrap() <= specificity && specificity <= ci["upper"].as_f64().unwrap());
    let intervals = csv_table(&run.join("intervals.csv"));
    assert!(intervals.iter().any(|r| r["metric"] == "roc_auc_delong" && r["class"] == "nodule"), "{intervals:?}");
}

#[test]
fn a_done_recipe_over_a_changed_dataset_is_refused_unless_forced() {
    let p = Project::new(3);
    let name = p.recipe("recipe.toml", TINY);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nodule = p.path().join("data/Train/nodule");
    let first = std::fs::read_dir(&nodule).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let extension = first.extension().unwrap().to_string_lossy().to_string();
    std::fs::copy(&first, nodule.join(format!("added.{extension}"))).unwrap();
    let out = p.run(&[&name, "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("the dataset changed since run") && message.contains("1 added (Train/nodule/added."),
        "{message}"
    );
    assert!(message.contains("--force"), "{message}");
    let out = p.run(&[&name, "--quiet", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // unchanged since the forced run: skipped again
    let out = p.run(&[&name]);
    assert!(out.status.success() && stderr(&out).contains("skipped (done"), "{}", stderr(&out));
}

/// A labels table for the files of a project: `label(class)` gives each image's label
/// cell; patients from the file names.
fn labels_table(p: &Project, header: &str, label: impl Fn(&str, &str) -> String) -> String {
    let mut table = format!("{header}\n");
    for file in files_under(&p.path().join("data")) {
        let relative = file.strip_prefix(p.path().join("data")).unwrap().to_string_lossy().to_string();
        let parts: Vec<&str> = relative.split('/').collect();
        let patient = parts[2].split('_').next().unwrap();
        table.push_str(&format!("{relative},{},{patient}\n", label(parts[0], parts[1])));
    }
    table
}

#[test]
fn multilabel_classification_from_a_labels_table() {
    let p = Project::new(6);
    // every abnormal image carries its finding and "abnormal"; normal images no label
    let table = labels_table(&p, "file,label,patient", |_, class| {
        if class == "normal" { String::new() } else { format!("{class}|abnormal") }
    });
    std::fs::write(p.path().join("data/labels.csv"), table).unwrap();
    let text = TINY.replace("root = \"data\"", "root = \"data\"\ntask = \"multilabel\"\nlabels = \"labels.csv\"");
    let name = p.recipe("multi.toml", &format!("{text}\n[eval]\nbootstrap = 50\ncalibrate = \"temperature\"\n"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "multi");
    let evaluation = json(&run.join("evaluation.json"));
    let labels: Vec<&str> =
        evaluation["per_label"].as_array().unwrap().iter().map(|l| l["class"].as_str().unwrap()).collect();
    assert_eq!(labels, ["abnormal", "cardiomegaly", "consolidation", "nodule", "pleural_effusion", "pneumothorax"]);
    assert_eq!(evaluation["per_label"][0]["support"], 10, "10 abnormal test images");
    let predictions = csv_table(&run.join("predictions.csv"));
    assert_eq!(predictions.len(), 12);
    assert!(predictions.iter().any(|r| r["true_labels"] == "abnormal|nodule"), "{predictions:?}");
    assert!(predictions.iter().any(|r| r["true_labels"].is_empty()), "normal images have no label");
    // probabilities are per-label sigmoids, not a softmax over labels
    let sums: Vec<f64> =
        predictions.iter().map(|r| labels.iter().map(|l| number(r, &format!("p_{l}"))).sum()).collect();
    // not a rounding bound: a softmax sums to one within 4e-7 (runs.rs); six sigmoids,
    // one per label, answer each on its own, and over 12 images miss one by far more
    assert!(sums.iter().any(|s| (s - 1.0).abs() > 1e-3), "{sums:?}");
    let status = json(&run.join("status.json"));
    for key in ["subset_accuracy", "label_accuracy", "macro_f1", "macro_roc_auc"] {
        assert!(status["test"][key].is_number(), "{key}: {status}");
    }
    assert!(csv_table(&run.join("per_label.csv")).len() == 8);
    // one temperature for every label, fitted on validation: each label calibrated with
    // it too, and the headline of both scales
    let temperature = status["test"]["temperature"].as_f64().expect("a temperature fitted on validation");
    assert!(temperature > 0.0 && temperature.is_finite(), "{temperature}");
    let calibration = csv_table(&run.join("calibration.csv"));
    for scale in ["raw", "calibrated"] {
        let rows: Vec<&str> =
            calibration.iter().filter(|r| r["probabilities"] == scale).map(|r| r["class"].as_str()).collect();
        assert_eq!(rows, labels, "{scale}: one row per label");
    }
    assert!(status["test"]["brier"].is_number() && status["test"]["brier_calibrated"].is_number(), "{status}");
    crate::manuscript::check_methods(&p.path().join("runs/multi"));
    let report = std::fs::read_to_string(p.path().join("runs/multi/report.html")).unwrap();
    assert!(report.contains("<h3>ROC curves (test)</h3>"), "the report draws each label's ROC curve");
    let split = csv_table(&run.join("split.csv"));
    assert!(split.iter().any(|r| r["class"] == "abnormal|nodule"));
    // the table's patient column groups the images
    assert!(split.iter().all(|r| r["group"].len() == 16));
    // the labels are part of the dataset: a relabelled table is a changed dataset
    let table = std::fs::read_to_string(p.path().join("data/labels.csv")).unwrap();
    std::fs::write(p.path().join("data/labels.csv"), table.replacen("|abnormal", "", 1)).unwrap();
    let out = p.run(&[&name, "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 modified (labels.csv)"), "{}", stderr(&out));
}

#[test]
fn single_labels_from_a_table_with_a_split_column_and_its_errors() {
    let p = Project::new(4);
    let table = labels_table(&p, "file,label,patient", |_, class| class.to_string());
    // the split column overrides the folders: the table decides
    let with_split: String = table
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                "file,label,patient,split".to_string()
            } else {
                format!("{line},{}", if line.starts_with("Test/") { "test" } else { "train" })
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p.path().join("data/labels.csv"), &with_split).unwrap();
    let text = TINY.replace("root = \"data\"", "root = \"data\"\nlabels = \"labels.csv\"");
    let name = p.recipe("table.toml", &text);
    let out = p.run(&["plan", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("labels.csv"), "{}", stdout(&out));

    // a listed file that is missing names the table's line
    std::fs::write(p.path().join("data/labels.csv"), format!("{with_split}\nTrain/nodule/gone.png,nodule,P9,train\n"))
        .unwrap();
    let message = refused(&p, &text, &[]);
    assert!(message.contains("labels.csv:") && message.contains("gone.png, which does not exist"), "{message}");
    // a label without training images
    let rare: Vec<String> = with_split
        .lines()
        .map(|line| match line.split(',').collect::<Vec<_>>().as_slice() {
            [file, "nodule", rest @ ..] if file.starts_with("Test/") => format!("{file},rare,{}", rest.join(",")),
            _ => line.to_string(),
        })
        .collect();
    std::fs::write(p.path().join("data/labels.csv"), rare.join("\n")).unwrap();
    let message = refused(&p, &text, &[]);
    assert!(message.contains("labels table") && message.contains("labels no training image"), "{message}");
}

#[test]
fn compare_refuses_a_confidence_out_of_range() {
    let out = radrun(&repo(), &["compare", "a", "b", "--confidence", "95"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--confidence must be between 0.5 and 1"), "{}", stderr(&out));
}

#[test]
fn study_uids_and_patient_names_never_reach_an_output_or_a_message() {
    use dicom_dictionary_std::tags;
    let p = Project::new(8);
    // the identifying values the example's DICOM files carry
    let mut identities = BTreeSet::new();
    for file in files_under(&p.path().join("data")).iter().filter(|f| f.extension().is_some_and(|e| e == "dcm")) {
        let object = dicom_object::open_file(file).unwrap();
        for tag in [tags::STUDY_INSTANCE_UID, tags::PATIENT_NAME] {
            let value = object.element(tag).unwrap().to_str().unwrap().trim_end_matches('\0').trim().to_string();
            identities.insert(value);
        }
    }
    assert!(identities.len() > 10, "{identities:?}");
    let text = TINY.replace("root = \"data\"", "root = \"data\"\ngroup_by = \"study\"\non_unreadable = \"skip\"");
    let name = p.recipe("study.toml", &text);
    let out = p.run(&[&name, "--json"]);
    // PNG and JPEG files have no StudyInstanceUID: skipped files may not be, so this
    // dataset cannot be grouped by study, and the error names a file, not a study
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    for value in &identities {
        assert!(!message.contains(value.as_str()) && !stdout(&out).contains(value.as_str()), "{value} printed");
    }
    // grouped by the DICOM PatientID where present: trained, and no output holds a UID
    // or a name
    std::fs::remove_dir_all(p.path().join("runs")).unwrap();
    let name = p.recipe("study.toml", &text.replace("group_by = \"study\"", "group_by = \"auto\""));
    let out = p.run(&[&name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    let written: Vec<(PathBuf, String)> = files_under(&p.path().join("runs"))
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "safetensors"))
        .map(|f| (f.clone(), String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string()))
        .collect();
    assert!(written.iter().any(|(f, _)| f.ends_with("split.csv")));
    for value in &identities {
        assert!(!printed.contains(value.as_str()), "{value} printed");
        for (file, text) in &written {
            assert!(!text.contains(value.as_str()), "{value} in {}", file.display());
        }
    }
}

/// A labels table and a group table kept in workbooks (written by openpyxl, as Excel
/// writes them): read from the sheet `data.sheet` names, as their CSV copy is; patient
/// IDs that Excel keeps as numbers are warned about, naming the column; a missing sheet
/// names the workbook's sheets.
#[test]
fn labels_and_groups_from_an_excel_workbook_plan_as_their_csv_does() {
    let Some(venv) = radrun_data::testing::venv() else { return };
    let p = Project::new(4);
    // patients as a hospital numbers them, with leading zeros (SYN-TR3000 -> 0013000)
    let table: String = labels_table(&p, "file,label,patient", |_, class| class.to_string())
        .lines()
        .enumerate()
        .map(|(i, line)| match line.rsplit_once(',') {
            Some((rest, patient)) if i > 0 => {
                let digits: String = patient.chars().filter(char::is_ascii_digit).collect();
                format!("{rest},00{}{digits}\n", if patient.contains("TE") { 2 } else { 1 })
            }
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(p.path().join("data/labels.csv"), &table).unwrap();
    // the same rows in the sheet "labels" (after a "notes" sheet), the IDs as numbers;
    // the file -> patient rows in patients.xlsx, the IDs as text
    let script = r#"
import csv, sys, openpyxl
rows = list(csv.reader(open(sys.argv[1])))
book = openpyxl.Workbook()
book.active.title = "notes"
book.active.append(["written for the test"])
sheet = book.create_sheet("labels")
for i, row in enumerate(rows):
    sheet.append(row if i == 0 else [row[0], row[1], int(row[2])])
book.save(sys.argv[2])
groups = openpyxl.Workbook()
for i, row in enumerate(rows):
    groups.active.append([row[0], row[2]] if i else ["file", "patient"])
groups.save(sys.argv[3])
"#;
    let data = p.path().join("data");
    let written = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .args([data.join("labels.csv"), data.join("labels.xlsx"), data.join("patients.xlsx")])
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    let plan = |table: &str, extra: &str| {
        let text = TINY.replace("root = \"data\"", &format!("root = \"data\"\nlabels = \"{table}\"{extra}"));
        let name = p.recipe("table.toml", &text);
        p.run(&["plan", &name])
    };
    let from_csv = plan("labels.csv", "");
    assert!(from_csv.status.success(), "{}", stderr(&from_csv));
    let from_excel = plan("labels.xlsx", "\nsheet = \"labels\"");
    assert!(from_excel.status.success(), "{}", stderr(&from_excel));
    // the same data and split (the run ids differ: the recipes do; the warning below)
    let data_of = |out: &std::process::Output| {
        let data = stdout(out).split_once("\nData:").map(|(_, d)| d.to_string()).unwrap();
        data.lines().filter(|l| !l.contains("warning:")).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(data_of(&from_excel).replace("labels.xlsx", "labels.csv"), data_of(&from_csv), "the same plan");
    // a warning of the data summary (and data_summary.json)
    let summary = stdout(&from_excel);
    assert!(summary.contains("labels.xlsx (sheet \"labels\"): column `patient` holds numbers"), "{summary}");
    // the group table as a workbook: the same patients, kept as text (no warning)
    let grouped = plan("labels.csv", "\ngroup_by = { csv = \"patients.xlsx\" }");
    assert!(grouped.status.success(), "{}", stderr(&grouped));
    assert!(!stdout(&grouped).contains("holds numbers"), "{}", stdout(&grouped));
    // a sheet the workbook lacks, and the first sheet without the table
    let missing = plan("labels.xlsx", "\nsheet = \"Labels\"");
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("has no sheet \"Labels\" (`data.sheet`); its sheets: \"notes\", \"labels\""));
    let first = plan("labels.xlsx", "");
    assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
    assert!(stderr(&first).contains("has no `file` column (columns: written for the test)"), "{}", stderr(&first));
}
