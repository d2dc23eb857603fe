//! Recipes: layering, strict checks with located messages (snapshots), sweeps, run ids,
//! `radrun plan`, `radrun doctor`.

use crate::common::{Project, TINY, redact, refused, repo, stderr, stdout};

#[test]
fn recipe_errors_name_the_file_line_key_and_fix() {
    let p = Project::new(3);
    let cases: &[(&str, String)] = &[
        ("unknown_key", TINY.replace("feature_maps = 8", "feature_maps = 8\nblokcs = 2")),
        ("unknown_section", format!("{TINY}\n[trian]\nepochs = 3\n")),
        ("wrong_type", TINY.replace("epochs = 2", "epochs = \"two\"")),
        ("negative_epochs", TINY.replace("epochs = 2", "epochs = -1")),
        ("dropout_out_of_range", TINY.replace("dense_units = 16", "dense_units = 16\ndropout = 1.2")),
        ("unknown_activation", TINY.replace("dense_units = 16", "dense_units = 16\nactivation = \"rleu\"")),
        ("missing_dataset", TINY.replace("root = \"data\"", "root = \"no/such/folder\"")),
        ("image_too_small_for_blocks", TINY.replace("feature_maps = 8", "feature_maps = 8\nblocks = 4")),
        ("sweep_over_unknown_key", format!("{TINY}\n[sweep]\n\"model.blokcs\" = [2, 3]\n")),
        ("sweep_point_impossible", format!("{TINY}\n[sweep]\n\"model.blocks\" = [2, 4]\n")),
        (
            "zip_lengths_differ",
            format!("{TINY}\n[sweep.zip]\n\"model.blocks\" = [1, 2]\n\"train.epochs\" = [1, 2, 3]\n"),
        ),
        ("toml_syntax", TINY.replace("epochs = 2", "epochs = = 2")),
        ("identifying_subgroup", format!("{TINY}\n[eval]\nsubgroups = [\"Manufacturer\", \"PatientName\"]\n")),
        (
            "unet_for_classification",
            TINY.replace("kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16", "kind = \"unet\""),
        ),
        ("bad_window", TINY.replace("image_size = [32, 32]", "image_size = [32, 32]\nwindow = \"lungs\"")),
        (
            "backbone_needs_bigger_images",
            TINY.replace(
                "kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16",
                "kind = \"transfer\"\nbackbone = \"inception_v3\"\nweights = \"none\"",
            )
            .replace("epochs = 2\n", ""),
        ),
        ("phase_with_epochs", format!("{TINY}\n[[train.phases]]\nname = \"a\"\nepochs = 1\noptimizer = \"adam\"\n")),
        (
            "unknown_phase_key",
            format!(
                "{}\n[[train.phases]]\nname = \"a\"\nepochs = 1\noptimizer = \"adam\"\nlearnin_rate = 0.1\n",
                TINY.replace("epochs = 2\n", "")
            ),
        ),
    ];
    for (name, text) in cases {
        insta::assert_snapshot!(*name, refused(&p, text, &[]));
    }
}

#[test]
fn environment_and_set_flags_are_named_when_wrong() {
    let p = Project::new(3);
    let name = p.recipe("recipe.toml", TINY);
    let env = crate::common::radrun_env(p.path(), &["plan", &name], &[("RADRUN_MODEL__BLOKCS", "3")]);
    assert_eq!(env.status.code(), Some(2));
    insta::assert_snapshot!("env_unknown_key", redact(&stderr(&env), &p));
    insta::assert_snapshot!("set_out_of_range", refused(&p, TINY, &["--set", "augment.zoom=2.0"]));
}

/// The `epochs` of the first run's resolved recipe.
fn resolved_epochs(out: &std::process::Output) -> String {
    let text = stdout(out);
    assert!(out.status.success(), "{}", stderr(out));
    text.lines().find(|l| l.starts_with("epochs = ")).expect("resolved epochs").to_string()
}

#[test]
fn layers_defaults_file_environment_set_in_that_order() {
    let p = Project::new(3);
    let name = p.recipe("recipe.toml", &TINY.replace("epochs = 2\n", ""));
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["plan", name.as_str(), "--resolved"];
        args.extend_from_slice(extra);
        crate::common::radrun_env(p.path(), &args, env)
    };
    assert_eq!(resolved_epochs(&run(&[], &[])), "epochs = 15", "built-in default");
    let with_file = p.recipe("recipe.toml", TINY);
    assert_eq!(with_file, name);
    assert_eq!(resolved_epochs(&run(&[], &[])), "epochs = 2", "file over default");
    assert_eq!(resolved_epochs(&run(&[("RADRUN_TRAIN__EPOCHS", "4")], &[])), "epochs = 4", "environment over file");
    assert_eq!(
        resolved_epochs(&run(&[("RADRUN_TRAIN__EPOCHS", "4")], &["--set", "train.epochs=5"])),
        "epochs = 5",
        "--set over environment"
    );
    // variables without a section separator are radrun's own (RADRUN_CACHE...), not recipe keys
    assert!(run(&[("RADRUN_SOMETHING", "1")], &[]).status.success());
}

fn ids(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains('-'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|id| id.starts_with("recipe"))
        .collect()
}

#[test]
fn sweeps_expand_and_run_ids_do_not_depend_on_key_order() {
    let p = Project::new(3);
    let grid = format!(
        "{TINY}\n[sweep]\n\"model.blocks\" = [1, 2]\n\"train.learning_rate\" = [0.01, 0.001]\n[sweep.zip]\n\"model.feature_maps\" = [4, 8]\n\"model.dense_units\" = [8, 16]\n"
    );
    let name = p.recipe("recipe.toml", &grid);
    let a = ids(&p.run(&["plan", &name]));
    assert_eq!(a.len(), 8, "2 x 2 grid crossed with 2 zip rows: {a:?}");
    assert!(a.contains(
        &a.iter().find(|id| id.contains("blocks=1-learning_rate=0.01-dense_units=8-feature_maps=4")).unwrap().clone()
    ));
    // same settings, keys and tables in another order, inline tables: same ids
    let reordered = r#"
[train]
batch_size = 4
epochs = 2
[sweep.zip]
"model.dense_units" = [8, 16]
"model.feature_maps" = [4, 8]
[sweep]
"train.learning_rate" = [0.01, 0.001]
"model.blocks" = [1, 2]
[model]
dense_units = 16
kind = "cnn"
feature_maps = 8
[augment]
rotation = 10.0
[data]
image_size = [32, 32]
root = "data"
"#;
    p.recipe("recipe.toml", reordered);
    let mut b = ids(&p.run(&["plan", "recipe.toml"]));
    let mut a_sorted = a.clone();
    a_sorted.sort();
    b.sort();
    assert_eq!(a_sorted, b);
    // a changed setting changes the hash
    p.recipe("recipe.toml", &grid.replace("batch_size = 4", "batch_size = 5"));
    let c = ids(&p.run(&["plan", "recipe.toml"]));
    assert!(c.iter().all(|id| !a.contains(id)));
}

#[test]
fn plan_of_the_example_recipes_lists_runs_and_data() {
    let root = repo();
    let out = crate::common::radrun(&root, &["plan", "recipes/chest_6class.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Recipe recipes/chest_6class.toml: 1 run(s)"), "{text}");
    for expected in [
        "cardiomegaly",
        "pneumothorax",
        "JPEG Baseline",
        "RLE Lossless",
        "Deflated",
        "MONOCHROME1",
        "PNG 16-bit",
        "non-image files       1",
    ] {
        assert!(text.contains(expected), "plan output lacks {expected}:\n{text}");
    }
    let grid = crate::common::radrun(&root, &["plan", "recipes/cnn_grid.toml"]);
    let text = stdout(&grid);
    assert!(text.contains("4 run(s)") && text.contains("cnn_grid-blocks=3-learning_rate=0.0003-"), "{text}");
}

#[test]
fn doctor_finds_libtorch_2_11_and_keeps_cuda_linked() {
    let out = crate::common::radrun(&repo(), &["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(report["libtorch_version"].as_str().unwrap().starts_with("2.11.0"), "{report}");
    assert_eq!(report["cpu_works"], true);
    let lib = std::path::PathBuf::from(report["libtorch_path"].as_str().unwrap());
    if lib.join("libtorch_cuda.so").exists() {
        // the --no-as-needed link kept it (tch-rs #907/#980): CUDA is not silently lost
        assert_eq!(report["libtorch_cuda_loaded"], true, "{report}");
    }
    let text = stdout(&crate::common::radrun(&repo(), &["doctor"]));
    assert!(text.contains("libtorch      2.11.0") && text.contains("threads"), "{text}");
}

#[test]
fn help_shows_the_commands_and_examples() {
    let out = crate::common::radrun(&repo(), &["--help"]);
    insta::assert_snapshot!("help", stdout(&out));
}

/// The recipe fuzz target's regressions (tests/fuzz-regressions/recipe/: hostile TOML,
/// huge sweeps, values at their types' limits), read as the target reads them: each is
/// refused with an error naming its file, never a panic or a plan of a billion runs.
#[test]
fn recipe_fuzz_findings_are_refused_naming_the_file() {
    let corpus = repo().join("tests/fuzz-regressions/recipe");
    let files = radrun_data::testing::files_under(&corpus);
    // a missing or emptied corpus must not pass having replayed nothing
    assert!(files.len() >= 5, "{}: {} files; the corpus is committed", corpus.display(), files.len());
    for file in files {
        let planned = std::panic::catch_unwind(|| radrun_runner::recipe::plan::plan(&file, &Default::default()));
        let planned = planned.unwrap_or_else(|_| panic!("planning {} panicked", file.display()));
        let error = planned.err().unwrap_or_else(|| panic!("{} was accepted", file.display())).to_string();
        assert!(error.contains(&file.display().to_string()), "the error must name the file: {error}");
    }
}
