//! `radrun schema`: the committed schema is what radrun prints, every bundled recipe points
//! at it, and the real taplo CLI (PyPI `taplo`, installed by scripts/setup.sh --test)
//! accepts what `radrun plan` accepts and names the line of what it refuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Project, repo, stderr, stdout};

/// The taplo of the test venv; None outside CI when it is not installed.
fn taplo() -> Option<PathBuf> {
    let found = std::env::var_os("RADRUN_VENV").map(|venv| Path::new(&venv).join("bin/taplo")).filter(|t| t.exists());
    assert!(found.is_some() || !radrun_data::testing::in_ci(), "taplo is missing: scripts/setup.sh --test installs it");
    found
}

/// `taplo check FILES` in `dir`, its output and errors together (taplo reports on stderr).
fn taplo_check(taplo: &Path, dir: &Path, files: &[&str]) -> (bool, String) {
    let out: Output = Command::new(taplo).arg("check").args(files).current_dir(dir).output().unwrap();
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn the_committed_schema_is_what_radrun_prints_and_every_recipe_points_at_it() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    let out = p.run(&["schema"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let committed = std::fs::read_to_string(repo().join("schema/recipe.schema.json")).unwrap();
    assert!(
        stdout(&out) == committed,
        "schema/recipe.schema.json is not what `radrun schema` prints: a recipe type changed; run \
         `radrun schema > schema/recipe.schema.json` and commit it"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // a key's description, default, allowed values and range, all from the code
    let fraction = &schema["$defs"]["DataSettings"]["properties"]["validation_fraction"];
    assert!(fraction["description"].as_str().unwrap().starts_with("Fraction of the training folder"), "{fraction}");
    assert_eq!((fraction["default"].as_f64(), fraction["exclusiveMaximum"].as_f64()), (Some(0.11), Some(1.0)));
    let optimizers = &schema["$defs"]["OptimizerName"]["enum"];
    assert!(optimizers.as_array().unwrap().iter().any(|o| o == "sgd"), "{optimizers}");
    for entry in std::fs::read_dir(repo().join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next(), Some("#:schema ../schema/recipe.schema.json"), "{}", path.display());
    }
}

#[test]
fn taplo_accepts_the_recipes_and_every_form_radrun_plans() {
    let Some(taplo) = taplo() else { return };
    let recipes: Vec<String> = std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let names: Vec<&str> = recipes.iter().map(String::as_str).collect();
    let (ok, said) = taplo_check(&taplo, &repo().join("recipes"), &names);
    assert!(ok && recipes.len() >= 10, "{said}");
    // the written forms of the hand-parsed keys, in recipes radrun plans: the schema may
    // not refuse what radrun accepts
    let p = Project { dir: tempfile::tempdir().unwrap() };
    let schema = repo().join("schema/recipe.schema.json");
    let example = repo().join("datasets.example");
    for (name, body) in [("images.toml", IMAGES), ("volumes.toml", VOLUMES)] {
        let text = format!("#:schema {}\n{}", schema.display(), body.replace("EXAMPLE", example.to_str().unwrap()));
        p.recipe(name, &text);
        let planned = p.run(&["plan", name]);
        assert!(planned.status.success(), "{name}: {}", stderr(&planned));
        let (ok, said) = taplo_check(&taplo, p.path(), &[name]);
        assert!(ok, "{name}: {said}");
    }
}

#[test]
fn taplo_names_the_line_of_a_misspelt_key_and_of_a_wrong_type() {
    let Some(taplo) = taplo() else { return };
    let p = Project { dir: tempfile::tempdir().unwrap() };
    let schema = repo().join("schema/recipe.schema.json");
    p.recipe(
        "bad.toml",
        &format!(
            "#:schema {}\n[data]\nroot = \"data\"\nimage_sise = [64, 64]\n\n[train]\nepochs = \"ten\"\n",
            schema.display()
        ),
    );
    let (ok, said) = taplo_check(&taplo, p.path(), &["bad.toml"]);
    assert!(!ok, "{said}");
    assert!(said.contains("bad.toml:4:1") && said.contains("'image_sise' was unexpected"), "{said}");
    assert!(said.contains("bad.toml:7:10") && said.contains("\"ten\" is not of type \"integer\""), "{said}");
    // radrun refuses the same file, at the same line
    let planned = p.run(&["plan", "bad.toml"]);
    assert!(!planned.status.success() && stderr(&planned).contains("bad.toml:4"), "{}", stderr(&planned));
}

/// A 2D recipe with the hand-parsed forms: a window list with a table, a series choice,
/// ImageNet-free transfer phases with "auto" and a number as rate, class weights as a
/// table, a device, folds as a list, a sensitivity threshold, subgroups by tag and by
/// table, and a sweep with a grid, zip, seeds and random search.
const IMAGES: &str = r#"
[data]
root = "EXAMPLE/chest6"
group_by = { csv = "patients.csv" }
image_size = [32, 32]
window = ["auto", { center = 40, width = 400 }]
channels = 2
series = "middle"

[model]
kind = "transfer"
backbone = "resnet18"
weights = "none"

[train]
class_weights = { normal = 2.0 }
device = "cpu"
schedule = { kind = "plateau", patience = 2 }
early_stopping = { metric = "val_loss", mode = "min", patience = 3 }
phases = [
  { name = "head", epochs = 1, optimizer = "adam", learning_rate = "auto", trainable = "head" },
  { name = "all", epochs = 1, optimizer = "sgd", learning_rate = 0.001, schedule = "cosine" },
]

[split]
folds = 3
fold = [1, 2]

[eval]
threshold = { sensitivity = 0.9 }
subgroups = ["PatientSex", { column = "format", table = "patients.csv" }]

[sweep]
seeds = [1, 2]
"model.head_dropout" = [0.2, 0.5]

[sweep.zip]
"train.batch_size" = [4, 8]
"data.split_seed" = [1, 2]

[sweep.random]
trials = 2
"train.weight_decay" = { log_uniform = [1e-5, 1e-3] }

[run]
stale_after = "20m"
"#;

/// A volume recipe with the volume forms: orientation, spacing and patch size as lists.
const VOLUMES: &str = r#"
[data]
dims = 3
task = "segmentation"
root = "EXAMPLE/organs3d/nifti"
images_folder = "Images"
masks_folder = "Masks"
normalize = "ct"
orientation = "LPS"
spacing = [2.0, 1.5, 1.5]
patch_size = [16, 32, 32]
interpolation = "linear"

[augment.volume]
mirror_axes = ["x"]
rotation_probability = 0.0

[model]
kind = "unet3d"
initial_features = 4
depth = 2

[train]
epochs = 1
learning_rate = 0.003
schedule = "cosine"

[eval]
overlap = 0.25
nsd_tolerance = 1.5
"#;
