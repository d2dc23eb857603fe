//! Hostile folders, found by trying them: links that loop or lead back into
//! the dataset, file names that are not UTF-8, and class names a spreadsheet would run
//! as formulas.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::common::{Project, TINY, only_run, stderr};

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap()
}

fn images(summary: &serde_json::Value) -> u64 {
    summary["splits"].as_array().unwrap().iter().map(|s| s["images"].as_u64().unwrap()).sum()
}

#[test]
fn links_loops_and_names_that_are_not_utf8_are_handled() {
    let p = Project::new(3);
    let name = p.recipe("tiny.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let class = p.path().join("data/Train/normal");
    let mut files: Vec<_> = std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let first = &files[0];
    let ext = first.extension().unwrap().to_str().unwrap().to_string();
    symlink(".", class.join("dirloop")).unwrap();
    symlink("..", class.join("up")).unwrap();
    symlink(first.file_name().unwrap(), class.join(format!("alias.{ext}"))).unwrap();
    std::fs::write(class.join(OsStr::from_bytes(b"notes-\xe9t\xe9.txt")), "Latin-1 name").unwrap();
    let latin1 = [&b"r\xe9sum\xe9."[..], ext.as_bytes()].concat();
    std::fs::copy(first, class.join(OsStr::from_bytes(&latin1))).unwrap();

    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "tiny");
    let summary = summary(&run);
    // 3 training and 2 test images per class, plus the copy with a Latin-1 name; the
    // loops, the link up and the alias add nothing
    assert_eq!(images(&summary), 6 * 5 + 1, "{summary:#}");
    let ignored: Vec<&str> = summary["ignored"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for left_out in ["dirloop", "up", &format!("alias.{ext}"), "notes-\\xE9t\\xE9.txt"] {
        assert!(ignored.iter().any(|i| i.ends_with(left_out)), "{left_out} not among the ignored: {ignored:?}");
    }
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    let escaped = format!("normal/r\\xE9sum\\xE9.{ext}");
    assert!(split.contains(&escaped), "the Latin-1 name, escaped, in split.csv:\n{split}");
    assert!(stderr(&out).contains("dirloop: a link back into the dataset"), "{}", stderr(&out));
}

#[test]
fn class_names_that_look_like_formulas_are_neutralised_in_csv_files() {
    let p = Project::new(2);
    let formula = "=HYPERLINK(\"http:x\",\"click\")";
    for split in ["Train", "Test"] {
        std::fs::rename(
            p.path().join("data").join(split).join("normal"),
            p.path().join("data").join(split).join(formula),
        )
        .unwrap();
    }
    let name = p.recipe("tiny.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "tiny");
    let cells = |file: &str| -> Vec<String> {
        let mut reader = csv::Reader::from_path(run.join(file)).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        header
            .into_iter()
            .chain(reader.records().flat_map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>()))
            .collect()
    };
    for file in ["predictions.csv", "per_class.csv", "confusion_matrix.csv"] {
        let cells = cells(file);
        assert!(cells.iter().any(|c| c.starts_with("'=HYPERLINK")), "{file}: {cells:?}");
        assert!(!cells.iter().any(|c| c.starts_with("=HYPERLINK")), "{file}: {cells:?}");
        // numbers, negative ones included, stay numbers
        assert!(!cells.iter().any(|c| c.starts_with("'-") && c[1..].parse::<f64>().is_ok()), "{file}");
    }
    // radrun reads its own files back as they were before neutralising
    let run_path = run.to_str().unwrap();
    let compared = p.run(&["compare", run_path, run_path]);
    assert!(compared.status.success(), "{}", stderr(&compared));
    let raw = p.run(&[&name, "--quiet", "--force", "--csv-raw"]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    assert!(cells("per_class.csv").iter().any(|c| c.starts_with("=HYPERLINK")), "--csv-raw writes the cell as it is");
}
