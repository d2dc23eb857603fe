//! Bad input found by trying it: every mistake in what the user wrote exits 2
//! before any run folder exists, names the key (or flag) and says what to do; sweeps are
//! checked run by run; a --set flag and a sweep never silently fight.

use crate::common::{Project, TINY, radrun, radrun_env, refused, stderr, stdout};

#[test]
fn dataset_paths_outside_the_layout_are_input_errors() {
    let p = Project::new(2);
    let root_slash = refused(&p, &TINY.replace("root = \"data\"", "root = \"/\""), &[]);
    assert!(root_slash.contains("folder /Train does not exist; set `data.train`"), "{root_slash}");
    let root_empty = refused(&p, &TINY.replace("root = \"data\"", "root = \"\""), &[]);
    assert!(root_empty.contains("set `data.train`"), "{root_empty}");
    let escape = refused(&p, &TINY.replace("root = \"data\"", "root = \"data\"\ntrain = \"../../../../etc\""), &[]);
    insta::assert_snapshot!("train_outside_root", escape);
}

#[test]
fn an_empty_class_folder_is_an_input_error() {
    let p = Project::new(2);
    std::fs::create_dir_all(p.path().join("data/Train/empty_class")).unwrap();
    let message = refused(&p, TINY, &[]);
    assert!(message.contains("class \"empty_class\" has no images in [PROJECT]/data/Train"), "{message}");
}

#[test]
fn a_weights_file_in_the_wrong_format_is_refused_before_the_data_is_loaded() {
    let p = Project::new(2);
    std::fs::write(p.path().join("vgg.safetensors"), b"this is not a safetensors file").unwrap();
    let text = TINY
        .replace(
            "kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16",
            "kind = \"transfer\"\nbackbone = \"resnet18\"\nweights = \"vgg.safetensors\"",
        )
        .replace("epochs = 2\n", "");
    let message = refused(&p, &text, &[]);
    assert!(message.contains("`model.weights` weights file [PROJECT]/vgg.safetensors"), "{message}");
}

#[test]
fn messages_name_the_flag_or_key_and_show_plain_values() {
    let p = Project::new(2);
    let cases: &[(&str, String, &[&str])] = &[
        // was blamed on the recipe line that says `epochs = 2`
        ("set_too_large", TINY.to_string(), &["--set", "train.epochs=4294967296"]),
        // the third value was silently dropped
        ("image_size_three_values", TINY.replace("image_size = [32, 32]", "image_size = [32, 32, 32]"), &[]),
        ("test_is_train", TINY.replace("root = \"data\"", "root = \"data\"\ntest = \"Train\""), &[]),
        // these printed "found Some(Value(12.0))" and "found Some(0)"
        ("learning_rate_too_large", TINY.replace("epochs = 2", "epochs = 2\nlearning_rate = 12.0"), &[]),
        ("batch_size_zero", TINY.replace("batch_size = 4", "batch_size = 0"), &[]),
    ];
    for (name, text, extra) in cases {
        insta::assert_snapshot!(*name, refused(&p, text, extra));
    }
}

#[test]
fn a_sweep_may_make_an_invalid_base_valid() {
    // 4 blocks do not fit 32x32 images, but every run of the sweep sets fewer
    let p = Project::new(2);
    let text = format!(
        "{}\n[sweep]\n\"model.blocks\" = [1, 2]\n",
        TINY.replace("feature_maps = 8", "feature_maps = 8\nblocks = 4")
    );
    let name = p.recipe("sweep.toml", &text);
    let out = p.run(&["plan", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().filter(|l| l.contains("sweep-blocks=")).count(), 2, "{}", stdout(&out));
}

#[test]
fn a_set_flag_on_a_swept_key_is_refused_naming_both() {
    let p = Project::new(2);
    let text = format!("{TINY}\n[sweep]\n\"model.blocks\" = [1, 2]\n");
    let message = refused(&p, &text, &["--set", "model.blocks=3"]);
    insta::assert_snapshot!("set_and_sweep", message);
}

/// A first word that names no command and no file is refused (exit 2) naming the
/// commands and the nearest one: `radrun evaluate --help` printed the general help and
/// exited 0, taking `evaluate` for a recipe. A recipe path still goes to the recipe
/// reader, and a command still runs.
#[test]
fn an_unknown_command_is_refused_naming_the_commands() {
    let p = Project::new(3);
    let out = radrun(p.path(), &["visualize", "--help"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("`visualize` is neither a command nor a recipe file"), "{message}");
    assert!(
        message.contains("predict") && message.contains("status") && !message.contains("did you mean"),
        "{message}"
    );
    let out = radrun(p.path(), &["statsu", "recipe.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `radrun status`?"), "{}", stderr(&out));
    let out = radrun(p.path(), &["no_such_recipe.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_such_recipe.toml") && !stderr(&out).contains("neither"), "{}", stderr(&out));
    let out = radrun(p.path(), &["plan", "--help"]);
    assert!(out.status.success() && stdout(&out).contains("Usage: radrun plan"), "{}", stderr(&out));
}

/// A file given as `data.root` is said to be a file, not a folder that does not exist.
#[test]
fn a_file_as_the_dataset_folder_is_said_to_be_a_file() {
    let p = Project::new(3);
    std::fs::write(p.path().join("scans.zip"), b"PK").unwrap();
    let message = refused(&p, &TINY.replace("root = \"data\"", "root = \"scans.zip\""), &[]);
    assert!(message.contains("names a file, not the folder holding the split folders: ./scans.zip"), "{message}");
}

/// A bad value from a `--set` flag or a `RADRUN_<SECTION>__<KEY>` variable is blamed on
/// the flag as written or on the variable, never on the recipe line that sets the same
/// key: whether parsing refuses it or a check after parsing does, and when the flag sets
/// a whole table and the bad value is a key inside it (that one was blamed on `[train]`).
#[test]
fn a_bad_value_from_a_flag_or_a_variable_names_it_not_a_recipe_line() {
    let p = Project::new(2);
    let flags: &[(&str, &str)] = &[
        ("train.epochs=abc", "--set train.epochs=abc (recipe recipe.toml): `train.epochs`: expected a whole number"),
        ("train.epochs=0", "--set train.epochs=0 (recipe recipe.toml): `train.epochs` must be at least 1"),
        ("train.early_stopping={patience=\"x\"}", "`train.early_stopping.patience`: expected a whole number"),
    ];
    for &(flag, expected) in flags {
        let message = refused(&p, TINY, &["--set", flag]);
        assert!(message.contains(expected) && message.starts_with("error: --set train."), "{message}");
        assert!(!message.contains("recipe.toml:"), "blamed on a recipe line: {message}");
    }
    let name = p.recipe("recipe.toml", TINY);
    for value in ["abc", "0"] {
        let out = radrun_env(p.path(), &["plan", &name], &[("RADRUN_TRAIN__EPOCHS", value)]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("environment variable RADRUN_TRAIN__EPOCHS (recipe recipe.toml): "), "{message}");
        assert!(!message.contains("recipe.toml:"), "blamed on a recipe line: {message}");
    }
}

/// A backbone that does not exist is named as `model.backbone`, with the value, the
/// backbones there are and the nearest one, wherever the value came from: the file, a
/// flag, a sweep, a variable. serde reports such a value as the `[model]` table's (its
/// `kind` picks the keys); one set by a flag, a sweep or a variable was told as `model`.
#[test]
fn an_unknown_backbone_is_named_by_its_key_with_the_backbones() {
    let p = Project::new(2);
    let transfer = |backbone: &str| {
        let model = format!("kind = \"transfer\"\nbackbone = \"{backbone}\"\nweights = \"none\"");
        TINY.replace("kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16", &model).replace("epochs = 2\n", "")
    };
    let from_file = refused(&p, &transfer("vgg99"), &[]);
    assert!(from_file.starts_with("error: recipe.toml:11: "), "{from_file}");
    names_the_backbones(&from_file);
    let from_flag = refused(&p, &transfer("resnet18"), &["--set", "model.backbone=vgg99"]);
    assert!(from_flag.starts_with("error: --set model.backbone=vgg99 (recipe recipe.toml): "), "{from_flag}");
    names_the_backbones(&from_flag);
    let swept = format!("{}\n[sweep]\n\"model.backbone\" = [\"vgg16\", \"vgg99\"]\n", transfer("resnet18"));
    let from_sweep = refused(&p, &swept, &[]);
    assert!(from_sweep.contains("sweep over `model.backbone`: `model.backbone`: "), "{from_sweep}");
    names_the_backbones(&from_sweep);
    let name = p.recipe("recipe.toml", &transfer("resnet18"));
    let out = radrun_env(p.path(), &["plan", &name], &[("RADRUN_MODEL__BACKBONE", "vgg99")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let from_variable = stderr(&out);
    assert!(
        from_variable.contains("environment variable RADRUN_MODEL__BACKBONE (recipe recipe.toml): "),
        "{from_variable}"
    );
    names_the_backbones(&from_variable);
}

/// Asserts that `message` tells `model.backbone = "vgg99"` with the backbones there are
/// and the nearest one.
fn names_the_backbones(message: &str) {
    let told = "`model.backbone`: \"vgg99\" is not allowed; expected one of \"resnet18\", \"resnet50\", \"vgg16\"";
    assert!(message.contains(told), "{message}");
    assert!(message.contains("\"mobilenet_v2\"") && message.contains("; did you mean \"vgg19\"?"), "{message}");
}
