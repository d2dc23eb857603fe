//! What a manuscript reports beyond the internal test metrics: the calibration of the
//! probabilities (Brier score, ECE, calibration slope and intercept, the reliability
//! diagram) and decision curves, each recomputed here from the run's own predictions.

use crate::common::{Project, TINY, only_run, stderr};

/// The rows of a CSV file as maps from column name to cell.
fn table(path: &std::path::Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| header.iter().map(str::to_string).zip(r.unwrap().iter().map(str::to_string)).collect())
        .collect()
}

fn number(row: &std::collections::BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| panic!("{column} = {:?} is not a number", row[column]))
}

#[test]
fn a_two_class_run_writes_its_calibration_and_decision_curve_from_its_predictions() {
    let p = Project::two_classes(3);
    let recipe = format!("{TINY}\n[eval]\ndecision_curve = {{ from = 0.05, to = 0.95, step = 0.05 }}\n");
    let name = p.recipe("binary.toml", &recipe);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "binary");
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("operating_point.json")).unwrap()).unwrap();
    let positive = point["positive_class"].as_str().unwrap().to_string();
    // each test image's positive-class probability as radrun holds it (an f32, written
    // exactly), and whether it is of that class
    let predictions = table(&run.join("predictions.csv"));
    let probability: Vec<f64> =
        predictions.iter().map(|r| f64::from(r[&format!("p_{positive}")].parse::<f32>().unwrap())).collect();
    let holds: Vec<bool> = predictions.iter().map(|r| r["true_class"] == positive).collect();
    let n = probability.len() as f64;
    assert_eq!(n, 4.0, "two test images of each class");

    let calibration = table(&run.join("calibration.csv"));
    assert_eq!(calibration.len(), 1, "the positive class only: {calibration:?}");
    assert_eq!(calibration[0]["probabilities"], "raw", "without eval.calibrate, the network's only");
    let row = &calibration[0];
    assert_eq!(
        (row["class"].as_str(), row["images"].as_str(), row["positives"].as_str()),
        (positive.as_str(), "4", "2")
    );
    let brier = probability.iter().zip(&holds).map(|(p, &h)| (p - f64::from(u8::from(h))).powi(2)).sum::<f64>() / n;
    assert!((number(row, "brier") - brier).abs() < 1e-12, "{row:?} vs {brier}");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert!((status["test"]["brier"].as_f64().unwrap() - brier).abs() < 1e-12, "{}", status["test"]);
    let intervals = table(&run.join("intervals.csv"));
    let interval = intervals.iter().find(|r| r["metric"] == "brier").expect("the Brier score's interval");
    assert!(number(interval, "lower") <= brier && brier <= number(interval, "upper"), "{interval:?}");

    let bins = table(&run.join("reliability.csv"));
    assert_eq!(bins.len(), 15);
    assert_eq!(bins.iter().map(|b| number(b, "images")).sum::<f64>(), 4.0);

    // net benefit by hand: images at or above the threshold called positive
    let curve = table(&run.join("decision_curve.csv"));
    assert_eq!(curve.len(), 19, "0.05 to 0.95 by 0.05");
    for (k, row) in curve.iter().enumerate() {
        let t = number(row, "threshold");
        assert!((t - 0.05 * (k + 1) as f64).abs() < 1e-12, "{row:?}");
        let called = |truth: bool| probability.iter().zip(&holds).filter(|(p, h)| **p >= t && **h == truth).count();
        let benefit = called(true) as f64 / n - called(false) as f64 / n * t / (1.0 - t);
        assert!((number(row, "net_benefit") - benefit).abs() < 1e-12, "{row:?} vs {benefit}");
        assert!((number(row, "treat_all") - (0.5 - 0.5 * t / (1.0 - t))).abs() < 1e-12, "{row:?}");
    }

    let report = p.run(&["report", "runs/binary"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(p.path().join("runs/binary/report.html")).unwrap();
    for section in ["Reliability diagram (test)", "Calibration (test)", "Decision curve (test)"] {
        assert!(html.contains(section), "the report has no {section:?}");
    }
}

/// Another seed's copy of one of the example's datasets (`chest6`, `ctslices`...: other
/// synthetic patients), written by the generator into `out`: `out/<dataset>/`.
pub fn external_copy(out: &std::path::Path, dataset: &str) -> Option<std::path::PathBuf> {
    let Some(venv) = radrun_data::testing::venv() else {
        assert!(!radrun_data::testing::in_ci(), "CI has the venv (scripts/test.sh)");
        eprintln!("skipped: run through scripts/test.sh for the example generator's venv");
        return None;
    };
    let generated = std::process::Command::new(venv.join("bin/python"))
        .arg(crate::common::repo().join("datasets.example/generate.py"))
        .args([out.to_str().unwrap(), "--seed", "7", "--only", dataset])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    Some(out.join(dataset))
}

/// The files of the two classes of `Project::two_classes` from the test folder of
/// `copy`, into `site/<class>/`.
fn two_class_site(copy: &std::path::Path, site: &std::path::Path, classes: &[&str]) {
    for class in classes {
        std::fs::create_dir_all(site.join(class)).unwrap();
        for file in std::fs::read_dir(copy.join("Test").join(class)).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, site.join(class).join(file.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn an_external_set_is_scored_at_the_runs_own_decisions_and_joins_the_tables_and_the_report() {
    let p = Project::two_classes(3);
    let name = p.recipe("binary.toml", &format!("{TINY}\n[eval]\ncalibrate = \"temperature\"\n"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "binary");
    let Some(copy) = external_copy(&p.path().join("generated"), "chest6") else { return };
    let run_arg = run.to_str().unwrap();

    // the whole copy holds four classes the run never saw: named, nothing written
    let refused = p.run(&["evaluate", run_arg, copy.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("consolidation, nodule, pleural_effusion, pneumothorax"), "{message}");
    // the run's own data shares its files and patients: leakage, an error
    let leaked = p.run(&["evaluate", run_arg, "data"]);
    assert_eq!(leaked.status.code(), Some(2), "{}", stderr(&leaked));
    assert!(stderr(&leaked).contains("leakage") && stderr(&leaked).contains("the same file content as"));
    // a patient of the run's data in a file of other bytes (another SOP instance of one
    // of its DICOM files): the same patient, leakage too
    let dicom = radrun_data::testing::files_under(&p.path().join("data"))
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "dcm"))
        .expect("the tiny project holds DICOM files");
    let other = p.path().join("same_patient/normal/other_instance.dcm");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    let python = radrun_data::testing::venv().unwrap().join("bin/python");
    let script = "import sys, pydicom\nd = pydicom.dcmread(sys.argv[1])\nd.SOPInstanceUID = '1.2.826.0.1.3680043.9.9'\n\
                  d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID\nd.save_as(sys.argv[2])";
    let rewritten = std::process::Command::new(python).args(["-c", script]).arg(&dicom).arg(&other).output().unwrap();
    assert!(rewritten.status.success(), "{}", String::from_utf8_lossy(&rewritten.stderr));
    let same_patient = p.run(&["evaluate", run_arg, "same_patient"]);
    assert_eq!(same_patient.status.code(), Some(2), "{}", stderr(&same_patient));
    let message = stderr(&same_patient);
    assert!(
        message.contains("0 image(s) of the external set have the same file content, and 1 the same patient"),
        "{message}"
    );
    assert!(message.contains("other_instance.dcm: the same patient identifier as"), "{message}");
    assert!(!p.path().join("runs/binary/external").exists(), "nothing written for a refused set");

    let site = p.path().join("site_b");
    two_class_site(&copy, &site, &["cardiomegaly", "normal"]);
    let scored = p.run(&["evaluate", run_arg, "site_b"]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let folder = p.path().join("runs/binary/external/site_b");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("external.json")).unwrap()).unwrap();
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("operating_point.json")).unwrap()).unwrap();
    // the decisions are the run's, never re-tuned on the external set
    let threshold = status["test"]["threshold"].as_f64().unwrap();
    assert_eq!(record["decisions"]["threshold"].as_f64(), Some(threshold));
    assert_eq!(point["threshold"].as_f64(), Some(threshold));
    assert_eq!(record["decisions"]["temperature"], status["test"]["temperature"]);
    assert_eq!(record["runs"][0], status["run_id"]);
    // every image of the site, scored: its counts at that threshold and its accuracy
    // recomputed from its predictions
    let predictions = table(&folder.join("predictions.csv"));
    let images =
        site.join("cardiomegaly").read_dir().unwrap().count() + site.join("normal").read_dir().unwrap().count();
    assert_eq!((predictions.len(), record["images"].as_u64()), (images, Some(images as u64)));
    let positive = point["positive_class"].as_str().unwrap();
    let called = |truth: bool| {
        let p_column = format!("p_{positive}");
        let at = |r: &&std::collections::BTreeMap<String, String>| {
            f64::from(r[&p_column].parse::<f32>().unwrap()) >= threshold
        };
        predictions.iter().filter(|r| at(r) && (r["true_class"] == positive) == truth).count() as u64
    };
    assert_eq!(point["true_positives"].as_u64(), Some(called(true)));
    assert_eq!(point["false_positives"].as_u64(), Some(called(false)));
    let right = predictions.iter().filter(|r| r["true_class"] == r["predicted_class"]).count() as f64;
    let accuracy = record["test"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - right / images as f64).abs() < 1e-12, "{accuracy} vs {right}/{images}");
    assert_eq!(record["internal"]["accuracy"], status["test"]["accuracy"]);
    assert!(record["test_intervals"]["accuracy"]["lower"].as_f64().unwrap() <= accuracy);
    // the leakage check compared against every file of the run, and found none shared
    let leakage = &record["leakage"];
    assert_eq!((leakage["shared_files"].as_u64(), leakage["shared_patients"].as_u64()), (Some(0), Some(0)));
    assert_eq!(leakage["run_files"].as_u64(), Some(table(&run.join("split.csv")).len() as u64));
    assert_eq!(record["fingerprint"]["files"].as_u64(), Some(images as u64));
    assert_eq!(table(&folder.join("split.csv")).len(), images);
    assert!(record["missing_classes"].as_array().unwrap().is_empty());
    for file in ["data_summary.txt", "calibration.csv", "reliability.csv", "decision_curve.csv", "intervals.csv"] {
        assert!(folder.join(file).is_file(), "{file} is written");
    }
    // the tables and the report gain the external results
    let markdown = std::fs::read_to_string(p.path().join("runs/binary/summary.md")).unwrap();
    assert!(markdown.contains("External validation of recipe binary"), "{markdown}");
    assert!(markdown.contains(&format!("| external: site_b | 1 | {images} |")), "{markdown}");
    assert!(markdown.contains(&format!("{accuracy:.3}")), "{markdown}");
    let latex = std::fs::read_to_string(p.path().join("runs/binary/summary.tex")).unwrap();
    assert!(latex.contains("external: site\\_b"), "{latex}");
    let html = std::fs::read_to_string(p.path().join("runs/binary/report.html")).unwrap();
    assert!(html.contains("<h2>External validation</h2>") && html.contains("site_b"), "no external section");

    // a set without one of the run's classes is scored, the class reported missing
    let normal_only = p.path().join("normal_only");
    two_class_site(&copy, &normal_only, &["normal"]);
    let partial = p.run(&["evaluate", run_arg, "normal_only", "--name", "normals"]);
    assert!(partial.status.success(), "{}", stderr(&partial));
    assert!(stderr(&partial).contains("classes without images in the external set: cardiomegaly"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("runs/binary/external/normals/external.json")).unwrap())
            .unwrap();
    assert_eq!(record["missing_classes"], serde_json::json!(["cardiomegaly"]));
    // the methods name both external sets, from their records
    check_methods(&p.path().join("runs/binary"));
    let methods = std::fs::read_to_string(p.path().join("runs/binary/methods.md")).unwrap();
    let site_b = format!("The external set `site_b` ({images} images of ");
    assert!(methods.contains(&site_b), "{methods}");
    assert!(methods.contains("at the threshold and temperature chosen on validation; the leakage check"), "{methods}");
    assert!(methods.contains("The external set `normals` ("), "{methods}");
}

/// Writes `clinical.csv` in `root`: each image below it (relative path) with its
/// `format`, the file's extension.
fn formats_table(root: &std::path::Path) {
    let mut rows = vec!["file,format".to_string()];
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if let Some(extension) = path.extension().filter(|e| *e != "csv") {
                let relative = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                rows.push(format!("{relative},{}", extension.to_str().unwrap()));
            }
        }
    }
    std::fs::write(root.join("clinical.csv"), rows.join("\n") + "\n").unwrap();
}

#[test]
fn subgroups_are_scored_as_scikit_learn_scores_them_and_small_ones_are_not_counted() {
    let p = Project::two_classes(3);
    formats_table(&p.path().join("data"));
    let subgroups = "subgroups = [\"PhotometricInterpretation\", { column = \"format\", table = \"clinical.csv\" }, \
                     { tag = \"PatientAge\", bins = [0, 40, 200] }]";
    let name = p.recipe("binary.toml", &format!("{TINY}\n[eval]\n{subgroups}\nmin_subgroup = 5\n"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // the run's own test set is 4 images: every level is too small, and says so only
    let run = only_run(&p, "binary");
    let own = table(&run.join("subgroups.csv"));
    assert!(own.iter().any(|r| r["subgroup"] == "format") && own.iter().any(|r| r["subgroup"] != "format"));
    assert_eq!(own.len(), 3, "one pooled row of each attribute: {own:?}");
    for row in &own {
        assert_eq!(row["note"], "fewer than 5 patients: not scored", "{row:?}");
        assert!(row["level"].starts_with("other: "), "a small level is never named: {row:?}");
        assert!(["patients", "images", "value", "lower", "p_value"].iter().all(|c| row[*c].is_empty()), "{row:?}");
    }
    // the resolved recipe keeps the three forms (read back for the methods section)
    let methods = std::fs::read_to_string(p.path().join("runs/binary/methods.md")).unwrap();
    assert!(methods.contains("Subgroups (`eval.subgroups`: `\"PhotometricInterpretation\"`"), "{methods}");
    assert!(methods.contains("bins = [0.0, 40.0, 200.0]"), "{methods}");
    check_methods(&p.path().join("runs/binary"));
    // an external site of about 80 images of 32 patients: its levels recomputed by
    // scikit-learn from its predictions, the attributes read by pydicom and the table
    let Some(copy) = external_copy(&p.path().join("generated"), "chest6") else { return };
    let site = p.path().join("site_b");
    two_class_site(&copy, &site, &["cardiomegaly", "normal"]);
    formats_table(&site);
    let scored = p.run(&["evaluate", run.to_str().unwrap(), "site_b"]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let folder = p.path().join("runs/binary/external/site_b");
    let python = radrun_data::testing::venv().unwrap().join("bin/python");
    let checked = std::process::Command::new(python)
        .arg(crate::common::repo().join("tests/python/subgroups_reference.py"))
        .args([folder.as_os_str(), site.join("clinical.csv").as_os_str(), "5".as_ref()])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success(), "{said}");
    eprintln!("{said}");
    // the large levels carry intervals and a comparison with the rest
    let rows = table(&folder.join("subgroups.csv"));
    let compared = rows.iter().filter(|r| !r["p_value"].is_empty()).count();
    assert!(compared > 0, "no level was compared with the rest: {rows:?}");
    for row in rows.iter().filter(|r| !r["p_value"].is_empty()) {
        let p_value = number(row, "p_value");
        assert!(p_value > 0.0 && p_value <= 1.0, "{row:?}");
        assert!(number(row, "difference_lower") <= number(row, "difference_upper"), "{row:?}");
    }
    let report = p.run(&["report", "runs/binary"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(p.path().join("runs/binary/report.html")).unwrap();
    assert!(html.contains("Subgroups (test)") && html.contains("forest plot of macro_roc_auc"), "no forest plot");
    check_methods(&p.path().join("runs/binary"));
}

/// The numbers of `text`: words of digits, with the thousands commas and decimal point
/// between them (so "167,846" and "0.001" are one number each); a word that mixes
/// letters and digits (a hash, "fp32", "sha256") is not a number.
fn numbers_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == ',' || c == '.'))
        .map(|word| word.trim_matches(|c| c == ',' || c == '.'))
        .filter(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|word| word.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.'))
        .map(str::to_string)
        .collect()
}

/// The methods section of a recipe's runs `folder` (written after its runs): every
/// number in it, outside its references, is a number of the run records (or one rounded
/// to 4 decimal places), a run's training time in whole seconds, or the training data's
/// images (cases) or patients (training plus validation of a run's data summary); and
/// the facts a reader checks first are there.
/// What a data summary counts: images, or a volume run's cases.
fn counted_in(summary: &serde_json::Value) -> &'static str {
    if summary["splits"][0]["cases"].is_number() { "cases" } else { "images" }
}

pub fn check_methods(folder: &std::path::Path) {
    let methods = std::fs::read_to_string(folder.join("methods.md")).expect("methods.md is written with the tables");
    assert!(std::fs::read_to_string(folder.join("methods.tex")).unwrap().contains("\\subsection*{Data}"));
    // "SHA-256" is the hash's name, not a number of the experiment
    let body = methods.split("## References").next().unwrap().replace("SHA-256", "SHA");
    let body = body.as_str();
    let mut records = String::new();
    let mut derived = std::collections::BTreeSet::new();
    for file in ["plan.json", "summary.csv"] {
        records += &std::fs::read_to_string(folder.join(file)).unwrap();
    }
    for set in std::fs::read_dir(folder.join("external")).into_iter().flatten() {
        records += &std::fs::read_to_string(set.unwrap().path().join("external.json")).unwrap();
    }
    let runs: Vec<std::path::PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("status.json").is_file())
        .collect();
    for run in &runs {
        for file in ["recipe.toml", "data_summary.json", "model_summary.txt"] {
            records += &std::fs::read_to_string(run.join(file)).unwrap();
        }
        // a volume run's fitted preprocessing
        records += &std::fs::read_to_string(run.join("preprocessing.json")).unwrap_or_default();
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
        derived.insert(format!("{:.0}", status["seconds"].as_f64().unwrap()));
        // status.json without its times and process, which the text never quotes
        let mut quoted = status.clone();
        for key in ["started", "finished", "pid", "seconds"] {
            quoted.as_object_mut().unwrap().remove(key);
        }
        records += &quoted.to_string();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap();
        let split =
            |name: &str| summary["splits"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
        for key in [counted_in(&summary), "groups"] {
            derived.insert(
                (split("train")[key].as_u64().unwrap() + split("validation")[key].as_u64().unwrap()).to_string(),
            );
        }
    }
    // the planned and the finished runs, counted
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("plan.json")).unwrap()).unwrap();
    derived.insert(plan["runs"].as_array().unwrap().len().to_string());
    derived.insert(runs.len().to_string());
    let recorded: std::collections::BTreeSet<String> = numbers_in(&records).into_iter().collect();
    // measured values (spacings, intensities) are written rounded to 4 decimal places
    derived
        .extend(recorded.iter().filter_map(|n| n.parse::<f64>().ok()).map(|x| format!("{}", (x * 1e4).round() / 1e4)));
    let strays: Vec<String> =
        numbers_in(body).into_iter().filter(|n| !recorded.contains(n) && !derived.contains(n)).collect();
    assert!(strays.is_empty(), "numbers of methods.md in no record: {strays:?}\n{body}");
    // claim.md: the 44 items, and no number in the answers that is not in a record
    let claim = std::fs::read_to_string(folder.join("claim.md")).expect("claim.md is written with methods.md");
    let items: Vec<&str> = claim.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| |")).skip(1).collect();
    assert_eq!(items.len(), 44, "{claim}");
    let answers: Vec<&str> = items.iter().filter_map(|l| l.split(" | ").nth(3)).collect();
    assert_eq!(answers.len(), 44, "each item has its four cells: {claim}");
    let strays: Vec<String> =
        numbers_in(&answers.join("\n")).into_iter().filter(|n| !recorded.contains(n) && !derived.contains(n)).collect();
    assert!(strays.is_empty(), "numbers of claim.md in no record: {strays:?}\n{claim}");
    assert!(items[19].starts_with("| 20 | Level at which partitions are disjoint | radrun |"), "{}", items[19]);
    // the test set's images and patients, and the parameters, as recorded
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("data_summary.json")).unwrap()).unwrap();
    let test = summary["splits"].as_array().unwrap().iter().find(|s| s["name"] == "test").unwrap();
    let unit = counted_in(&summary);
    assert!(body.contains(&format!("{} {unit} of {} patients", test[unit], test["groups"])), "{body}");
    let model = std::fs::read_to_string(runs[0].join("model_summary.txt")).unwrap();
    let parameters = model.lines().find_map(|l| l.trim().strip_prefix("learnable parameters:")).unwrap().trim();
    assert!(body.contains(&format!("It had {parameters} learnable parameters")), "{body}");
}
