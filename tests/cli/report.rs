//! `report.html` in a real browser (Debian's chromium, installed by scripts/test.sh):
//! every run is a row, every chart and image decodes, sorting reorders rows, nothing
//! from the user's files is run as markup, and the console stays clean. And Grad-CAM
//! looks where the phantom's finding is.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Project, TINY, repo, stderr};

/// The chromium binary; in CI it must be there (scripts/test.sh installs it).
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("RADRUN_CHROMIUM").map(PathBuf::from).or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from).into_iter().find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            !radrun_data::testing::in_ci(),
            "no chromium: scripts/test.sh installs Debian's chromium for the report tests"
        );
        eprintln!("skipped: no chromium (run the tests with scripts/test.sh, which installs it)");
    }
    found
}

/// Loads `page` (a file) in headless chromium; its DOM after scripts ran, and the
/// browser's log (console messages included).
fn browse(chromium: &Path, page: &Path, flags: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(flags)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Reads the report inside an iframe of a page beside it and prints what it found as
/// JSON: rows, images that did not decode, the run ids before and after sorting by run
/// id (twice), and any element the hostile class name would have made.
const HARNESS: &str = r#"<!DOCTYPE html><html><body><pre id="out">not loaded</pre>
<iframe id="report" src="report.html" width="1300" height="900"></iframe>
<script>
console.log('radrun-sentinel');
document.getElementById('report').onload = function () {
  var d = this.contentDocument;
  var ids = function () {
    return Array.prototype.map.call(d.querySelectorAll('#runs-table tbody tr'), function (r) { return r.cells[1].textContent; });
  };
  var headers = Array.prototype.slice.call(d.querySelectorAll('#runs-table th'));
  var runId = headers.filter(function (h) { return h.textContent === 'run_id'; })[0];
  var before = ids();
  runId.click();
  var ascending = ids();
  runId.click();
  var descending = ids();
  var images = Array.prototype.slice.call(d.images);
  document.getElementById('out').textContent = JSON.stringify({
    rows: before.length,
    before: before, ascending: ascending, descending: descending,
    images: images.length,
    charts: d.querySelectorAll('img.chart').length,
    gallery: d.querySelectorAll('figure img.thumb').length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; }),
    injected: d.querySelectorAll('img[src="x"]').length,
    shown: d.body.textContent.indexOf('<img src=x onerror=alert(1)>') >= 0,
    sections: Array.prototype.map.call(d.querySelectorAll('section'), function (s) { return s.id; })
  });
};
</script></body></html>"#;

#[test]
fn the_report_renders_sorts_and_escapes_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let p = Project::new(4);
    let hostile = "<img src=x onerror=alert(1)>";
    for split in ["Train", "Test"] {
        std::fs::rename(
            p.path().join("data").join(split).join("nodule"),
            p.path().join("data").join(split).join(hostile),
        )
        .unwrap();
    }
    let recipe = format!("{TINY}\n[sweep]\n\"train.epochs\" = [2, 1]\n");
    let name = p.recipe("report.toml", &recipe);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = p.path().join("runs/report");
    let html = std::fs::read_to_string(folder.join("report.html")).unwrap();
    assert!(!html.contains(hostile), "the class name is escaped in the HTML");
    assert!(!html.contains("http://") && !html.contains("https://"), "no address to fetch anything from");

    // `radrun report` writes it again on demand; a folder that is none is refused
    std::fs::remove_file(folder.join("report.html")).unwrap();
    let again = p.run(&["report", "runs/report"]);
    assert!(again.status.success() && folder.join("report.html").exists(), "{}", stderr(&again));
    let refused = p.run(&["report", "data"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("no plan.json"), "{}", stderr(&refused));

    std::fs::write(folder.join("harness.html"), HARNESS).unwrap();
    let (dom, log) = browse(&chromium, &folder.join("harness.html"), &["--allow-file-access-from-files", "--dump-dom"]);
    let json = dom.split("<pre id=\"out\">").nth(1).and_then(|s| s.split("</pre>").next()).expect("the harness ran");
    let found: serde_json::Value =
        serde_json::from_str(&json.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
            .unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(found["rows"], 2, "{found}");
    let ids = |k: &str| -> Vec<String> {
        found[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let mut sorted = ids("before");
    sorted.sort();
    assert_eq!(ids("ascending"), sorted, "{found}");
    sorted.reverse();
    assert_eq!(ids("descending"), sorted, "{found}");
    assert_ne!(ids("ascending"), ids("descending"));
    assert_eq!(found["broken"].as_array().unwrap().len(), 0, "images that did not decode: {found}");
    // per run: loss, accuracy, learning rate, confusion matrix, ROC; and 2 metrics x 1 key
    assert!(found["charts"].as_u64().unwrap() >= 2 * 5 + 2, "{found}");
    assert!(found["gallery"].as_u64().unwrap() >= 2 * 2 * 6, "each run's test images and their maps: {found}");
    assert_eq!(found["injected"], 0, "{found}");
    assert_eq!(found["shown"], true, "the hostile name shows as text: {found}");
    for section in ["recipe", "data", "runs", "by-value"] {
        assert!(found["sections"].as_array().unwrap().iter().any(|s| s == section), "{section}: {found}");
    }
    // the report's own console: no errors, no blocked request
    assert!(log.contains("radrun-sentinel"), "the browser's console reaches its log: {log}");
    let report_lines: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("CONSOLE") || l.contains("Refused")) && !l.contains("radrun-sentinel"))
        .collect();
    assert!(report_lines.is_empty(), "console: {report_lines:?}");

    // and a screenshot renders
    let shot = folder.join("report.png");
    let (_, log) = browse(
        &chromium,
        &folder.join("report.html"),
        &["--window-size=1300,2000", &format!("--screenshot={}", shot.display())],
    );
    let image = image::open(&shot).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!((image.width(), image.height()), (1300, 2000));
}

/// Where Grad-CAM looks, against where the generator drew each finding
/// (`generate.py --lesions`). The tutorial's CNN on 64 x 64 images; the margin of 2
/// pixels is half a cell of its last feature map (cells are 4 pixels apart).
#[test]
fn grad_cam_looks_at_the_finding() {
    let runs = tempfile::tempdir().unwrap();
    let lesions = tempfile::tempdir().unwrap();
    let python = std::env::var("RADRUN_VENV").map(|v| PathBuf::from(v).join("bin/python")).unwrap_or("python3".into());
    let made = Command::new(python)
        .args([repo().join("datasets.example/generate.py").to_str().unwrap(), "--lesions"])
        .args([lesions.path().to_str().unwrap(), "64", "64"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = crate::common::radrun(
        &repo(),
        &[
            "recipes/chest_6class.toml",
            "--runs",
            runs.path().to_str().unwrap(),
            "--set",
            "data.image_size=[64, 64]",
            "--set",
            "report.gallery=1000",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = std::fs::read_dir(runs.path().join("chest_6class"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let mut reader = csv::Reader::from_path(run.join("gallery.csv")).unwrap();
    let mut shares: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for row in reader.records() {
        let row = row.unwrap();
        let (heat, file, truth, predicted) = (&row[2], &row[3], &row[4], &row[5]);
        if truth != predicted || truth == "normal" {
            continue;
        }
        let heat = image::open(run.join(heat)).unwrap().to_luma8();
        let stem = Path::new(file).file_stem().unwrap().to_string_lossy().into_owned();
        let region = image::open(lesions.path().join(truth).join(format!("{stem}.png"))).unwrap().to_luma8();
        let inside = |x: u32, y: u32| {
            let (x0, y0) = (x.saturating_sub(2), y.saturating_sub(2));
            (x0..=(x + 2).min(63)).any(|i| (y0..=(y + 2).min(63)).any(|j| region.get_pixel(i, j)[0] > 0))
        };
        let (mut total, mut within, mut area) = (0.0, 0.0, 0.0);
        for (x, y, v) in heat.enumerate_pixels() {
            total += v[0] as f64;
            if inside(x, y) {
                within += v[0] as f64;
                area += 1.0;
            }
        }
        shares.entry(truth.to_string()).or_default().push((within / total.max(1.0), area / 4096.0));
    }
    let mean = |v: &[(f64, f64)], k: fn(&(f64, f64)) -> f64| v.iter().map(k).sum::<f64>() / v.len() as f64;
    let pneumothorax = &shares["pneumothorax"];
    assert!(pneumothorax.len() >= 20, "{shares:?}");
    // the air of a pneumothorax: most of the map's mass falls inside it
    assert!(mean(pneumothorax, |s| s.0) > 0.5, "{shares:?}");
    // nodules, consolidations, effusions: several times what an even map would give
    for class in ["nodule", "consolidation", "pleural_effusion"] {
        let s = &shares[class];
        assert!(mean(s, |s| s.0) > 2.0 * mean(s, |s| s.1), "{class}: {s:?}");
    }
}
