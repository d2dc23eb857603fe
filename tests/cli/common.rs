//! Helpers: running radrun, tiny datasets, recipes in temporary folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use radrun_data::testing::network_rounding;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `radrun` with `args`, run in `dir`.
pub fn radrun(dir: &Path, args: &[&str]) -> Output {
    radrun_env(dir, args, &[])
}

pub fn radrun_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_radrun"));
    command.args(args).current_dir(dir).env_remove("RADRUN_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("radrun starts")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary project folder with a tiny copy of the example dataset in `data/`:
/// `per_class` training and 2 test images per class, mixing PNG, JPEG and DICOM.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(per_class: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = repo().join("datasets.example/chest6");
        for (split, n) in [("Train", per_class), ("Test", 2)] {
            for class in std::fs::read_dir(source.join(split)).unwrap() {
                let class = class.unwrap().path();
                let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e != "txt"))
                    .collect();
                files.sort();
                // spread the picks so every format shows up
                let step = (files.len() / n).max(1);
                let target = dir.path().join("data").join(split).join(class.file_name().unwrap());
                std::fs::create_dir_all(&target).unwrap();
                for f in files.iter().step_by(step).take(n) {
                    std::fs::copy(f, target.join(f.file_name().unwrap())).unwrap();
                }
            }
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `recipe.toml` (or another name) in the project and returns its name.
    pub fn recipe(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path().join(name), text).unwrap();
        name.to_string()
    }

    /// A project of two classes (cardiomegaly and normal), `per_class` training images
    /// each and two test images each.
    pub fn two_classes(per_class: usize) -> Self {
        let p = Project::new(per_class);
        for split in ["Train", "Test"] {
            for class in ["consolidation", "nodule", "pleural_effusion", "pneumothorax"] {
                std::fs::remove_dir_all(p.path().join("data").join(split).join(class)).unwrap();
            }
        }
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        radrun(self.path(), args)
    }
}

/// The folder of the one run of `recipe` in the project's `runs/`.
pub fn only_run(project: &Project, recipe: &str) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(project.path().join("runs").join(recipe))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// `radrun plan` and `radrun run` on `text` (written as `recipe.toml`, run with the
/// `extra` flags) both refuse it with exit code 2 (bad input), give the same message and
/// leave no run folder; returns the message with temporary paths redacted.
pub fn refused(project: &Project, text: &str, extra: &[&str]) -> String {
    let name = project.recipe("recipe.toml", text);
    let with = |first: &[&str]| -> Output {
        let mut args = first.to_vec();
        args.extend_from_slice(extra);
        project.run(&args)
    };
    let planned = with(&["plan", &name]);
    assert_eq!(planned.status.code(), Some(2), "plan: exit 2 expected (bad input):\n{}", stderr(&planned));
    let ran = with(&[&name, "--quiet"]);
    assert_eq!(ran.status.code(), Some(2), "run: exit 2 expected (bad input):\n{}", stderr(&ran));
    assert!(!project.path().join("runs/recipe").exists(), "no run folder may be made for bad input");
    assert_eq!(stderr(&planned), stderr(&ran));
    redact(&stderr(&ran), project)
}

/// Replaces temporary paths so snapshots are stable.
pub fn redact(text: &str, project: &Project) -> String {
    let tmp = project.path().canonicalize().unwrap();
    text.replace(&tmp.display().to_string(), "[PROJECT]").replace(&project.path().display().to_string(), "[PROJECT]")
}

/// A tiny classification recipe: 32x32, 1 epoch.
pub const TINY: &str = r#"
[data]
root = "data"
image_size = [32, 32]

[augment]
rotation = 10.0

[model]
kind = "cnn"
feature_maps = 8
dense_units = 16

[train]
epochs = 2
batch_size = 4
"#;

/// Asserts that `have` equals `want` within `tolerance`, in length as well as element by
/// element: a comparison that zips the two would pass on a shorter list.
#[track_caller]
pub fn assert_close(have: &[f64], want: &[f64], tolerance: f64, what: &str) {
    assert_eq!(have.len(), want.len(), "{what}: {have:?} vs {want:?}");
    assert!(have.iter().zip(want).all(|(a, b)| (a - b).abs() <= tolerance), "{what}: {have:?} vs {want:?}");
}

/// How far apart two float32 computations of a [`TINY`] network (or of its variants in
/// these tests: at most 32 x 32 pixels, 8 feature maps, 16 dense units) may put a
/// probability: a run's own evaluation and `radrun predict` batch the images otherwise,
/// may lay the kernels out otherwise (`train.channels_last`) and may run with other thread
/// counts, so they add in other orders. Its longest path is 6 layers (4 convolutions, 2
/// dense) and its widest sum the first dense layer's 16 x 5 x 5 = 400 inputs: logits move
/// by at most `network_rounding(6, 400)` = 1.4e-5 of their magnitude, which stays below 10
/// after an epoch or two from the initial weights (order one). A softmax probability
/// moves by at most half the largest move of a logit (|dp_i| <= p_i (1 - p_i) x 2 max |dz|,
/// and p (1 - p) <= 1/4): 7e-5 in all. A wrong resize, normalisation or weight moves
/// probabilities by 1e-2 and more.
pub fn tiny_probability_tolerance() -> f64 {
    let largest_logit = 10.0;
    largest_logit * network_rounding(6, 400) / 2.0
}
