//! DICOM from the command line: `radrun dicom inspect` and recipes with one
//! channel per window.

use crate::common::{Project, TINY, only_run, radrun, stderr, stdout};

#[test]
fn dicom_inspect_says_what_it_reads_and_exits_by_the_result() {
    let p = Project::new(2);
    let dicom = radrun_data::testing::files_under(&p.path().join("data"))
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "dcm"))
        .unwrap();
    let text = p.path().join("notes.dcm");
    std::fs::write(&text, "not an image").unwrap();

    let good = radrun(p.path(), &["dicom", "inspect", dicom.to_str().unwrap()]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let out = stdout(&good);
    for expected in ["decodes          yes, ", "transfer syntax", "rescale", "window", "patient id       present"] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    // the example's PatientIDs start SYN-, as its file names do: only the name line has one
    assert!(out.lines().skip(1).all(|l| !l.contains("SYN-")), "no patient identity is printed:\n{out}");

    let mixed = radrun(p.path(), &["dicom", "inspect", "--json", dicom.to_str().unwrap(), "notes.dcm"]);
    assert_eq!(mixed.status.code(), Some(1), "{}", stderr(&mixed));
    let parsed: serde_json::Value = serde_json::from_str(&stdout(&mixed)).unwrap();
    assert_eq!(parsed[0]["decodes"], true);
    assert_eq!(parsed[1]["decodes"], false);
    assert!(parsed[1]["reason"].as_str().unwrap().contains("no file meta information"), "{parsed:#}");
    assert!(stderr(&mixed).contains("1 of 2 file(s) cannot be decoded"));

    let usage = radrun(p.path(), &["dicom", "inspect"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn several_windows_make_one_input_channel_each() {
    let p = Project::new(3);
    let recipe =
        TINY.replace("image_size = [32, 32]", "image_size = [32, 32]\nwindow = [\"lung\", \"mediastinum\", \"bone\"]");
    let name = p.recipe("windows.toml", &recipe.replace("epochs = 2", "epochs = 1"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = std::fs::read_to_string(only_run(&p, "windows").join("model_summary.txt")).unwrap();
    assert!(summary.starts_with("Model: cnn (input 3 x 32 x 32)"), "{summary}");
    let resolved = std::fs::read_to_string(only_run(&p, "windows").join("recipe.toml")).unwrap();
    assert!(resolved.contains("window = [\"lung\", \"mediastinum\", \"bone\"]"), "{resolved}");

    let clash = p.recipe("clash.toml", &recipe.replace("[data]", "[data]\nchannels = 2"));
    let refused = p.run(&["plan", &clash]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("data.window lists 3 windows, one channel each"), "{}", stderr(&refused));
}

#[test]
fn the_ct_series_recipe_orders_slices_by_position_and_keeps_each_series_together() {
    let repo = crate::common::repo();
    let runs = tempfile::tempdir().unwrap();
    let runs_dir = runs.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["recipes/ct_series.toml", "--quiet", "--runs", runs_dir, "--set", "train.epochs=1"];
        args.extend_from_slice(extra);
        let out = radrun(&repo, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let newest_run = || {
        let mut dirs: Vec<_> = std::fs::read_dir(runs.path().join("ct_series"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort_by_key(|d| std::fs::metadata(d.join("status.json")).unwrap().modified().unwrap());
        dirs.pop().unwrap()
    };
    let predicted_files = |run: &std::path::Path| -> Vec<String> {
        let mut reader = csv::Reader::from_path(run.join("predictions.csv")).unwrap();
        reader.records().map(|r| r.unwrap()[0].to_string()).collect()
    };

    // every slice: 10 per series, each series (patient) on one side of the split
    run(&[]);
    let slices = newest_run();
    assert_eq!(predicted_files(&slices).len(), 8 * 10);
    let split = std::fs::read_to_string(slices.join("split.csv")).unwrap();
    let mut side_of_patient = std::collections::BTreeMap::new();
    for line in split.lines().skip(1) {
        let patient = line.split('/').nth(2).unwrap().to_string();
        let side = line.split(',').nth(1).unwrap().to_string();
        assert_eq!(side_of_patient.entry(patient).or_insert(side.clone()), &side, "{line}");
    }
    assert_eq!(side_of_patient.len(), 24, "every patient folder in split.csv");

    // the middle slice is the one at the middle position, whose file name is 05.dcm
    // (names run against positions in the example)
    run(&["--set", "data.series=\"middle\""]);
    let middle = predicted_files(&newest_run());
    assert_eq!(middle.len(), 8);
    assert!(middle.iter().all(|f| f.ends_with("/05.dcm")), "{middle:?}");

    // slabs of 3 slices make 3 channels
    run(&["--set", "data.series={ slab = 3 }", "--set", "data.window=\"auto\""]);
    let summary = std::fs::read_to_string(newest_run().join("model_summary.txt")).unwrap();
    assert!(summary.starts_with("Model: cnn (input 3 x 32 x 32)"), "{summary}");
}

#[test]
fn dicom_slices_converts_series_to_ordered_pngs_radrun_reads_back() {
    let repo = crate::common::repo();
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("converted");
    let src = repo.join("datasets.example/ctslices");
    let converted =
        radrun(&repo, &["dicom", "slices", src.to_str().unwrap(), dst.to_str().unwrap(), "--window", "lung"]);
    assert!(converted.status.success(), "{}", stderr(&converted));
    assert!(stdout(&converted).starts_with("240 slice(s) written"), "{}", stdout(&converted));
    let mut reader = csv::Reader::from_path(dst.join("slices.csv")).unwrap();
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    // the example's file names run against the positions: 10.dcm is the lowest slice
    let first = rows.iter().find(|r| r[0] == "Test/nodule/SYN-CTTE100/0000.png").expect("first slice row");
    assert!(first[1].ends_with("Test/nodule/SYN-CTTE100/10.dcm") && first[3] == "0", "{first:?}");
    // the 16-bit PNG holds the lung-windowed slice radrun decodes from the DICOM file
    let options = radrun_data::DecodeOptions {
        windows: radrun_data::Windows::one(radrun_data::Window::Preset(radrun_data::WindowPreset::Lung)),
        ..Default::default()
    };
    let (dicom, _) = radrun_data::decode::decode(&src.join("Test/nodule/SYN-CTTE100/10.dcm"), &options).unwrap();
    let (png, _) = radrun_data::decode::decode(&dst.join("Test/nodule/SYN-CTTE100/0000.png"), &options).unwrap();
    let worst = dicom.pixels.iter().zip(&png.pixels).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // half a 16-bit level, plus two float32 roundings of values <= 1 (half a float32 step,
    // 6e-8, each): the level is chosen from the windowed value times 65535 in float32,
    // and reading the PNG divides by 65535 again
    assert!(worst <= 0.5 / 65535.0 + f32::EPSILON, "{worst}");

    // the converted folder is a dataset radrun reads
    let recipe = out.path().join("converted.toml");
    std::fs::write(&recipe, "[data]\nroot = \"converted\"\nimage_size = [32, 32]\n").unwrap();
    let planned = radrun(out.path(), &["plan", "converted.toml"]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(stdout(&planned).contains("PNG 16-bit: 240"), "{}", stdout(&planned));

    // the tutorial's filters, as options
    let filtered = radrun(
        &repo,
        &["dicom", "slices", src.to_str().unwrap(), out.path().join("f").to_str().unwrap(), "--min-slices", "11"],
    );
    assert!(filtered.status.success());
    assert!(stdout(&filtered).starts_with("0 slice(s) written"), "{}", stdout(&filtered));
    assert!(stdout(&filtered).contains("10 slice(s), fewer than --min-slices 11"), "{}", stdout(&filtered));
}

/// `radrun dicom inspect` says when a frame's values came from an Enhanced image's
/// functional groups, and shows the frame's own (the reference's Enhanced CT keeps a
/// wrong intercept of 0 at the top level and -1024 in frame 0's group).
#[test]
fn inspect_names_values_from_enhanced_functional_groups() {
    let Some(reference) = radrun_data::testing::reference_dir() else { return };
    let file = reference.join("dicom/enhanced_ct_per_frame_rescale.dcm");
    let out = radrun(std::path::Path::new("."), &["dicom", "inspect", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("intercept -1024") && text.contains("position         (-50, -40.5, 20) mm"), "{text}");
    assert!(text.contains("notes            values from Enhanced functional groups"), "{text}");
}
