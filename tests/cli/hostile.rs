//! Hostile folders, found by trying them: links that loop or lead back into
//! the dataset, file names that are not UTF-8 (and two that differ only in such a
//! byte), class names a spreadsheet would run as formulas, and a dataset with more
//! unreadable files than a console can show.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

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

/// `folder/<before><byte><after>`: a file name that is not UTF-8 when `byte` is a
/// Latin-1 letter such as 0xE9 (é).
fn latin1(folder: &Path, before: &str, byte: u8, after: &str) -> PathBuf {
    folder.join(OsStr::from_bytes(&[before.as_bytes(), &[byte][..], after.as_bytes()].concat()))
}

/// The text of a file radrun wrote, checked: UTF-8 (a raw byte of a file name would not
/// be) and without U+FFFD (what a lossy conversion leaves in place of such bytes).
fn written_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", path.display()));
    assert!(!text.contains('\u{FFFD}'), "{}: a name written lossily:\n{text}", path.display());
    text
}

/// The extensions of the files radrun writes as text.
const TEXT: [&str; 4] = ["csv", "json", "log", "html"];

/// The names of the text files (CSV, JSON, logs, HTML) under `folder`, each checked
/// with [`written_text`].
fn text_files(folder: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            names.extend(text_files(&path));
        } else if path.extension().and_then(OsStr::to_str).is_some_and(|e| TEXT.contains(&e)) {
            written_text(&path);
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// Asserts that `text` (what radrun wrote as `what`) names both `<before>\xE9<after>`
/// and `<before>\xE8<after>`.
fn names_both(text: &str, before: &str, after: &str, what: &str) {
    for byte in ["\\xE9", "\\xE8"] {
        let name = format!("{before}{byte}{after}");
        assert!(text.contains(&name), "{what} does not name {name}:\n{text}");
    }
}

/// Two images whose names differ only in a byte that is not UTF-8 (Latin-1 `café` and
/// `cafè`) stay two names, written `\xE9` and `\xE8`, in everything radrun writes: the
/// run's split.csv, data_summary.json (for two ignored notes named the same way),
/// predictions.csv and gallery.csv, every other text file of the runs folder
/// (status.json, train.log, report.html), and `radrun predict`'s table, heat maps,
/// errors and console. Never U+FFFD, which would make them one name.
#[test]
fn names_that_differ_only_in_a_byte_that_is_not_utf8_stay_two_names_everywhere() {
    let p = Project::new(3);
    let name = p.recipe("tiny.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let test = p.path().join("data/Test/normal");
    let first = std::fs::read_dir(&test).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let ext = format!(".{}", first.extension().unwrap().to_str().unwrap());
    let new = p.path().join("new");
    std::fs::create_dir_all(&new).unwrap();
    for byte in [0xe9, 0xe8] {
        std::fs::copy(&first, latin1(&test, "caf", byte, &ext)).unwrap();
        std::fs::write(latin1(&test, "notes-caf", byte, ".txt"), "not an image").unwrap();
        std::fs::write(latin1(&new, "broken-caf", byte, ".png"), "not a PNG").unwrap();
    }

    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\u{FFFD}'), "{}", stderr(&out));
    let run = only_run(&p, "tiny");
    let written = text_files(&p.path().join("runs"));
    for file in ["split.csv", "data_summary.json", "predictions.csv", "gallery.csv", "status.json", "report.html"] {
        assert!(written.iter().any(|w| w == file), "{file} is not among {written:?}");
    }
    for file in ["split.csv", "predictions.csv", "gallery.csv"] {
        names_both(&written_text(&run.join(file)), "normal/caf", &ext, file);
    }
    // JSON escapes the backslash: the names are compared as the JSON reader gives them
    let summary: serde_json::Value = serde_json::from_str(&written_text(&run.join("data_summary.json"))).unwrap();
    let ignored: Vec<&str> = summary["ignored"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    names_both(&ignored.join("\n"), "notes-caf", ".txt", "data_summary.json's ignored files");

    let run_arg = run.to_str().unwrap();
    let predicted = p.run(&["predict", run_arg, "data/Test", "new", "--out", "p.csv", "--heatmaps", "maps"]);
    assert_eq!(predicted.status.code(), Some(1), "two files are no images: {}", stderr(&predicted));
    assert!(!stderr(&predicted).contains('\u{FFFD}'), "{}", stderr(&predicted));
    names_both(&stderr(&predicted), "new/broken-caf", ".png", "predict's console");
    let table = written_text(&p.path().join("p.csv"));
    names_both(&table, "normal/caf", &ext, "p.csv");
    names_both(&table, "_caf", "_gradcam.png", "p.csv's heat maps");
    let mut reader = csv::Reader::from_path(p.path().join("p.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (heatmap, error) = (column("heatmap"), column("error"));
    let mut files = BTreeSet::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert!(files.insert(row[0].to_string()), "{} is in p.csv twice", &row[0]);
        if row[0].contains("broken-caf") {
            assert!(row[error].contains(&row[0]), "the error names the file as the file column does: {row:?}");
        } else {
            assert!(p.path().join(&row[heatmap]).is_file(), "the heat map p.csv names is there: {row:?}");
        }
    }
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

/// Under `on_unreadable = "skip"`, every unreadable file made a warning line and a line
/// of the printed data summary (10,000 files: 20,000 lines). The console now names the
/// first five and counts the rest; skipped.csv in the run folder lists every one.
#[test]
fn many_unreadable_files_are_summarised_on_the_console_and_listed_in_the_run_folder() {
    let p = Project::new(2);
    let class = p.path().join("data/Train/normal");
    for i in 0..30 {
        std::fs::write(class.join(format!("broken{i:02}.png")), b"not a png at all").unwrap();
    }
    let skip = TINY.replace("root = \"data\"", "root = \"data\"\non_unreadable = \"skip\"");
    let name = p.recipe("skip.toml", &skip.replace("epochs = 2", "epochs = 1"));
    let out = p.run(&[&name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let console = stderr(&out);
    let naming = console.lines().filter(|l| l.contains("broken")).count();
    assert!((1..=10).contains(&naming), "{naming} lines name a skipped file:\n{console}");
    assert!(console.contains("and 25 more: each run folder's skipped.csv lists every one"), "{console}");
    let run = only_run(&p, "skip");
    let mut reader = csv::Reader::from_path(run.join("skipped.csv")).unwrap();
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), ["file", "reason"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let files: BTreeSet<String> = rows.iter().map(|r| r[0].to_string()).collect();
    let expected: BTreeSet<String> = (0..30).map(|i| format!("Train/normal/broken{i:02}.png")).collect();
    assert_eq!(files, expected, "every skipped file, relative to data.root");
    assert!(rows.iter().all(|r| r[1].contains(&r[0])), "each reason names its file: {rows:?}");
    assert_eq!(summary(&run)["skipped"].as_array().unwrap().len(), 30);
}
