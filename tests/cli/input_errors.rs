//! Bad input found by trying it: every mistake in what the user wrote exits 2
//! before any run folder exists, names the key (or flag) and says what to do; sweeps are
//! checked run by run; a --set flag and a sweep never silently fight.

use crate::common::{Project, TINY, radrun, refused, stderr, stdout};

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
    let out = radrun(p.path(), &["evaluate", "--help"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("`evaluate` is neither a command nor a recipe file"), "{message}");
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
