//! DICOM from the command line (issue #10): `radrun dicom inspect` and recipes with one
//! channel per window.

use crate::common::{Project, TINY, only_run, radrun, stderr, stdout};

#[test]
fn dicom_inspect_says_what_it_reads_and_exits_by_the_result() {
    let p = Project::new(2);
    let dicom = walk(&p.path().join("data")).into_iter().find(|f| f.extension().is_some_and(|e| e == "dcm")).unwrap();
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

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}
