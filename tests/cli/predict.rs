//! `radrun predict`: a trained run applied to new files gives the
//! probabilities its own test evaluation gave for the same files, reads DICOM without an
//! extension, and reports the files it cannot read without stopping.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Project, TINY, assert_close, only_run, stderr, tiny_probability_tolerance};

/// file name -> the p_ columns of a predictions CSV, and the error column if any.
/// Per file name: its probabilities (`p_` columns) and its error.
pub fn rows(path: &Path) -> BTreeMap<String, (Vec<f64>, String)> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let name = Path::new(&r[0]).file_name().unwrap().to_string_lossy().into_owned();
            let p = header.iter().zip(r.iter()).filter(|(h, _)| h.starts_with("p_"));
            let p = p.filter_map(|(_, v)| v.parse().ok()).collect();
            let error = header.iter().position(|h| h == "error").map(|i| r[i].to_string()).unwrap_or_default();
            (name, (p, error))
        })
        .collect()
}

#[test]
fn predictions_on_the_test_folder_equal_the_runs_own_and_bad_files_are_rows() {
    let p = Project::new(3);
    let name = p.recipe("predicted.toml", TINY);
    let refused = p.run(&["predict", "runs/predicted/none", "data/Test"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "predicted");

    // new files: a DICOM without extension, and a file that is no image
    let extra = p.path().join("new");
    std::fs::create_dir_all(&extra).unwrap();
    let dicom = std::fs::read_dir(p.path().join("data/Test/nodule"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "dcm"))
        .expect("the test copy has a DICOM file");
    std::fs::copy(&dicom, extra.join("IM0001")).unwrap();
    std::fs::write(extra.join("broken.png"), b"not a png").unwrap();

    let predicted = p.run(&["predict", run.to_str().unwrap(), "data/Test", "new", "--out", "p.csv"]);
    assert_eq!(predicted.status.code(), Some(1), "one file cannot be read: {}", stderr(&predicted));
    assert!(stderr(&predicted).contains("broken.png"), "{}", stderr(&predicted));
    let got = rows(&p.path().join("p.csv"));
    let own = rows(&run.join("predictions.csv"));
    assert_eq!(got.len(), own.len() + 2, "{got:?}");
    // the run's evaluation and predict batch the files otherwise (two more here), perhaps
    // with other thread counts: rounding apart (see tiny_probability_tolerance)
    for (file, (want, _)) in &own {
        let (have, error) = &got[file];
        assert!(error.is_empty(), "{file}: {error}");
        assert_close(have, want, tiny_probability_tolerance(), file);
    }
    let dicom_name = dicom.file_name().unwrap().to_string_lossy().into_owned();
    let (copy, original) = (&got["IM0001"].0, &got[&dicom_name].0);
    // the same pixels in another place of the batches
    let found = "a DICOM file without extension is found and read";
    assert_close(copy, original, tiny_probability_tolerance(), found);
    assert!(got["broken.png"].0.is_empty() && !got["broken.png"].1.is_empty(), "{:?}", got["broken.png"]);

    // what cannot work is refused before anything is written
    let run_arg = run.to_str().unwrap();
    for (args, says) in [
        (vec!["predict", run_arg, "data/Test", "--batch", "0"], "0 is not in 1..=65535"),
        (vec!["predict", run_arg, "empty"], "holds no PNG, JPEG or DICOM file"),
        (
            vec!["predict", run_arg, "data/Test", "--out", &format!("{run_arg}/predictions.csv")],
            "inside the run folder",
        ),
    ] {
        std::fs::create_dir_all(p.path().join("empty")).unwrap();
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn predictions_follow_the_runs_own_settings() {
    // three channels, Pillow's nearest resize, the last epoch's weights, another batch size
    let p = Project::new(3);
    let text = TINY
        .replace("image_size = [32, 32]", "image_size = [24, 28]\nchannels = 3\nresize = \"nearest\"")
        .replace("[train]\n", "[train]\nkeep = \"last\"\n");
    let name = p.recipe("own.toml", &text);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "own");
    let predicted = p.run(&["predict", run.to_str().unwrap(), "data/Test", "--out", "o.csv", "--batch", "5"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    assert!(stderr(&predicted).contains("(last.safetensors weights)"), "{}", stderr(&predicted));
    let (got, own) = (rows(&p.path().join("o.csv")), rows(&run.join("predictions.csv")));
    assert_eq!(got.len(), own.len());
    // another batch size: rounding apart (see tiny_probability_tolerance)
    for (file, (want, _)) in &own {
        assert_close(&got[file].0, want, tiny_probability_tolerance(), file);
    }
}

#[test]
fn a_segmentation_run_predicts_its_masks_and_their_areas() {
    let p = Project::new(1);
    crate::runs::lungs(&p);
    let name = p.recipe("seg.toml", crate::runs::SEGMENTATION);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "seg");
    let predicted = p.run(&["predict", run.to_str().unwrap(), "lungs/Test/Images", "--out", "out/seg.csv"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let mut reader = csv::Reader::from_path(p.path().join("out/seg.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, ["file", "mask", "area_pixels_foreground", "area_mm2_foreground", "error"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        // the same mask the run's own evaluation wrote for this image
        let stem = Path::new(&row[0]).file_stem().unwrap().to_string_lossy().into_owned();
        let own = image::open(run.join("predictions").join(format!("{stem}_mask.png"))).unwrap().to_luma8();
        let mask = image::open(p.path().join(&row[1])).unwrap().to_luma8();
        assert_eq!(mask, own, "{stem}");
        let area = own.pixels().filter(|p| p.0[0] == 255).count();
        assert_eq!(row[2].parse::<usize>().unwrap(), area, "{stem}");
    }
}

#[test]
fn a_two_class_run_also_gives_the_call_at_its_threshold() {
    let p = Project::two_classes(3);
    let name = p.recipe("binary.toml", TINY);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "binary");
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("operating_point.json")).unwrap()).unwrap();
    let (positive, threshold) = (point["positive_class"].as_str().unwrap(), point["threshold"].as_f64().unwrap());
    let predicted = p.run(&["predict", run.to_str().unwrap(), "data/Test", "--out", "b.csv"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let mut reader = csv::Reader::from_path(p.path().join("b.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (p_positive, t, call) = (at(&format!("p_{positive}")), at("threshold"), at("predicted_at_threshold"));
    let mut calls = 0;
    for row in reader.records().map(Result::unwrap) {
        assert_eq!(row[t].parse::<f64>().unwrap(), threshold);
        // the probability as radrun compares it: an f32 (written exactly), widened
        let is_positive = f64::from(row[p_positive].parse::<f32>().unwrap()) >= threshold;
        assert_eq!(&row[call] == positive, is_positive, "{row:?}");
        calls += 1;
    }
    assert_eq!(calls, 4, "two test images of each class");
}

#[test]
fn heat_maps_of_predict_are_the_gallerys_and_a_bad_layer_is_refused() {
    let p = Project::new(3);
    let name = p.recipe("maps.toml", TINY);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "maps");
    let run_arg = run.to_str().unwrap();
    let predicted = p.run(&["predict", run_arg, "data/Test", "--out", "p.csv", "--heatmaps", "maps"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let mut reader = csv::Reader::from_path(p.path().join("p.csv")).unwrap();
    let column = reader.headers().unwrap().iter().position(|h| h == "heatmap").expect("a heatmap column");
    let maps: BTreeMap<String, String> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (Path::new(&r[0]).file_name().unwrap().to_string_lossy().into_owned(), r[column].to_string())
        })
        .collect();
    let mut gallery = csv::Reader::from_path(run.join("gallery.csv")).unwrap();
    let mut compared = 0;
    for row in gallery.records() {
        let row = row.unwrap();
        let file = Path::new(&row[3]).file_name().unwrap().to_string_lossy().into_owned();
        let ours = image::open(run.join(&row[1])).unwrap().to_rgb8();
        let theirs = image::open(p.path().join(&maps[&file])).unwrap().to_rgb8();
        assert_eq!(ours, theirs, "{file}: the same image, weights and class give the same map");
        compared += 1;
    }
    assert_eq!(compared, 12, "every test image of the tiny run is in its gallery");
    let refused = p.run(&["predict", run_arg, "data/Test", "--heatmaps", "maps", "--gradcam-layer", "dense"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("block1"), "names the layers there are: {}", stderr(&refused));
}

#[test]
fn ensembles_average_a_configurations_folds_and_best_chooses_by_validation() {
    let p = Project::new(4);
    let text = format!(
        "{}\n[split]\nfolds = 3\n\n[sweep]\n\"model.dense_units\" = [16, 8]\n\"split.fold\" = [1, 2, 3]\n",
        TINY.replace("epochs = 2", "epochs = 1")
    );
    let name = p.recipe("cv.toml", &text);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = p.path().join("runs/cv");
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("plan.json")).unwrap()).unwrap();
    // run id -> (dense units, validation loss, its own predictions of the test folder)
    let mut runs = Vec::new();
    for (i, entry) in plan["runs"].as_array().unwrap().iter().enumerate() {
        let id = entry[0].as_str().unwrap().to_string();
        let units = entry[1][0].as_str().unwrap().to_string();
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join(&id).join("status.json")).unwrap()).unwrap();
        let loss = status["validation"]["val_loss"].as_f64().unwrap();
        let csv = format!("run{i}.csv");
        let own = p.run(&["predict", folder.join(&id).to_str().unwrap(), "data/Test", "--out", &csv]);
        assert!(own.status.success(), "{}", stderr(&own));
        runs.push((id, units, loss, rows(&p.path().join(csv))));
    }
    assert_eq!(runs.len(), 6);
    let same = |a: &BTreeMap<String, (Vec<f64>, String)>, b: &BTreeMap<String, (Vec<f64>, String)>, what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        // each run's probabilities are the same bits in every `radrun predict` here (the
        // same batches, kernels and threads); an ensemble's mean of three rounds at most
        // three times at values <= 1 (1.8e-7 in float32), the mean above in float64
        for (file, (want, _)) in b {
            assert_close(&a[file].0, want, 1e-6, &format!("{what}, {file}"));
        }
    };

    // --best: the run with the lowest validation loss
    let best = runs.iter().min_by(|a, b| a.2.total_cmp(&b.2)).unwrap();
    let out = p.run(&["predict", "runs/cv", "data/Test", "--best", "val_loss", "--out", "best.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&best.0), "{}", stderr(&out));
    same(&rows(&p.path().join("best.csv")), &best.3, "--best val_loss");

    // --ensemble --best: the mean probabilities of the three folds of the configuration
    // whose folds have the lowest mean validation loss
    let mean_loss = |units: &str| runs.iter().filter(|r| r.1 == units).map(|r| r.2).sum::<f64>() / 3.0;
    let units = if mean_loss("16") <= mean_loss("8") { "16" } else { "8" };
    let folds: Vec<_> = runs.iter().filter(|r| r.1 == units).collect();
    let mut expected = folds[0].3.clone();
    for (file, (p, _)) in expected.iter_mut() {
        for (k, v) in p.iter_mut().enumerate() {
            *v = folds.iter().map(|r| r.3[file].0[k]).sum::<f64>() / 3.0;
        }
    }
    let out = p.run(&["predict", "runs/cv", "data/Test", "--ensemble", "--best", "val_loss", "--out", "e.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("the mean of 3 runs"), "{}", stderr(&out));
    let ensemble = rows(&p.path().join("e.csv"));
    same(&ensemble, &expected, "--ensemble --best val_loss");
    let mut reader = csv::Reader::from_path(p.path().join("e.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    for record in reader.records().map(Result::unwrap) {
        let probabilities: Vec<f64> = (2..header.len() - 1).map(|i| record[i].parse().unwrap()).collect();
        let top = (0..probabilities.len()).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b])).unwrap();
        assert_eq!(&record[1], &header[top + 2][2..], "the predicted class is the mean's most probable");
    }

    // what would mislead is refused
    let one_run = folder.join(&runs[0].0);
    for (args, says) in [
        (vec!["predict", "runs/cv", "data/Test", "--ensemble"], "differ in model.dense_units"),
        (vec!["predict", "runs/cv", "data/Test", "--best", "test_accuracy"], "test result optimistic"),
        (vec!["predict", "runs/cv", "data/Test", "--best", "val_dice"], "known: val_accuracy, val_loss"),
        (vec!["predict", one_run.to_str().unwrap(), "data/Test", "--ensemble"], "has no plan.json"),
    ] {
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // a fold not done: its configuration is left out of --ensemble --best, and with no
    // configuration complete there is no ensemble; --best still chooses among done runs
    let other = runs.iter().find(|r| r.1 != units).unwrap();
    std::fs::remove_file(folder.join(&other.0).join("status.json")).unwrap();
    let out = p.run(&["predict", "runs/cv", "data/Test", "--ensemble", "--best", "val_loss", "--out", "e2.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 configuration(s) with runs not done are left out"), "{}", stderr(&out));
    same(&rows(&p.path().join("e2.csv")), &expected, "--ensemble --best val_loss with the other configuration partial");
    std::fs::remove_file(folder.join(&folds[1].0).join("status.json")).unwrap();
    let out = p.run(&["predict", "runs/cv", "data/Test", "--ensemble", "--best", "val_loss"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no configuration has all its runs done"), "{}", stderr(&out));
    let out = p.run(&["predict", "runs/cv", "data/Test", "--best", "val_loss", "--out", "b2.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
