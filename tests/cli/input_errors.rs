//! Bad input found by trying it (issue #8): every mistake in what the user wrote exits 2
//! before any run folder exists, names the key (or flag) and says what to do; sweeps are
//! checked run by run; a --set flag and a sweep never silently fight.

use crate::common::{Project, TINY, redact, stderr, stdout};

/// `radrun plan` and `radrun run` on a recipe both refuse it with exit code 2, leave
/// no run folder, and give the same message, which is returned.
fn refused_before_any_folder(p: &Project, text: &str, extra: &[&str]) -> String {
    let name = p.recipe("bad.toml", text);
    let mut plan = vec!["plan", name.as_str()];
    plan.extend_from_slice(extra);
    let planned = p.run(&plan);
    assert_eq!(planned.status.code(), Some(2), "plan: exit 2 expected:\n{}", stderr(&planned));
    let mut run = vec![name.as_str(), "--quiet"];
    run.extend_from_slice(extra);
    let ran = p.run(&run);
    assert_eq!(ran.status.code(), Some(2), "run: exit 2 expected:\n{}", stderr(&ran));
    assert!(!p.path().join("runs/bad").exists(), "no run folder may be made for bad input");
    assert_eq!(stderr(&planned), stderr(&ran));
    redact(&stderr(&ran), p)
}

#[test]
fn dataset_paths_outside_the_layout_are_input_errors() {
    let p = Project::new(2);
    let root_slash = refused_before_any_folder(&p, &TINY.replace("root = \"data\"", "root = \"/\""), &[]);
    assert!(root_slash.contains("folder /Train does not exist; set `data.train`"), "{root_slash}");
    let root_empty = refused_before_any_folder(&p, &TINY.replace("root = \"data\"", "root = \"\""), &[]);
    assert!(root_empty.contains("set `data.train`"), "{root_empty}");
    let escape = refused_before_any_folder(
        &p,
        &TINY.replace("root = \"data\"", "root = \"data\"\ntrain = \"../../../../etc\""),
        &[],
    );
    insta::assert_snapshot!("train_outside_root", escape);
}

#[test]
fn an_empty_class_folder_is_an_input_error() {
    let p = Project::new(2);
    std::fs::create_dir_all(p.path().join("data/Train/empty_class")).unwrap();
    let message = refused_before_any_folder(&p, TINY, &[]);
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
    let message = refused_before_any_folder(&p, &text, &[]);
    assert!(message.contains("`model.weights` weights file [PROJECT]/vgg.safetensors"), "{message}");
}

#[test]
fn a_bad_set_value_names_the_flag_not_a_line_of_the_recipe() {
    let p = Project::new(2);
    let message = refused_before_any_folder(&p, TINY, &["--set", "train.epochs=4294967296"]);
    insta::assert_snapshot!("set_too_large", message);
}

#[test]
fn image_size_takes_exactly_two_sides() {
    let p = Project::new(2);
    let message =
        refused_before_any_folder(&p, &TINY.replace("image_size = [32, 32]", "image_size = [32, 32, 32]"), &[]);
    insta::assert_snapshot!("image_size_three_values", message);
}

#[test]
fn the_test_folder_cannot_be_the_training_folder() {
    let p = Project::new(2);
    let message =
        refused_before_any_folder(&p, &TINY.replace("root = \"data\"", "root = \"data\"\ntest = \"Train\""), &[]);
    insta::assert_snapshot!("test_is_train", message);
}

#[test]
fn settings_messages_show_values_not_rust_debug_text() {
    // these printed "found Some(Value(12.0))" and "found Some(0)"
    let p = Project::new(2);
    let rate = refused_before_any_folder(&p, &TINY.replace("epochs = 2", "epochs = 2\nlearning_rate = 12.0"), &[]);
    insta::assert_snapshot!("learning_rate_too_large", rate);
    let batch = refused_before_any_folder(&p, &TINY.replace("batch_size = 4", "batch_size = 0"), &[]);
    insta::assert_snapshot!("batch_size_zero", batch);
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
    let message = refused_before_any_folder(&p, &text, &["--set", "model.blocks=3"]);
    insta::assert_snapshot!("set_and_sweep", message);
}
