//! `radrun init DATA_DIR`: a commented recipe that plans, for each example layout; the
//! clear errors of a folder it cannot use; sizes proposed from mixed images; no file
//! replaced without --force; and the chest6 recipe it writes trains.

use std::path::Path;

use crate::common::{Project, repo, stderr, stdout};

/// `radrun init DATA --out OUT` in the project; the recipe written.
fn init(p: &Project, data: &Path, out: &str, extra: &[&str]) -> String {
    let mut args = vec!["init", data.to_str().unwrap(), "--out", out];
    args.extend_from_slice(extra);
    let made = p.run(&args);
    assert!(made.status.success(), "init {}: {}", data.display(), stderr(&made));
    assert_eq!(stdout(&made).trim(), out);
    std::fs::read_to_string(p.path().join(out)).unwrap()
}

/// `radrun plan OUT` succeeds.
fn plans(p: &Project, out: &str) {
    let planned = p.run(&["plan", out]);
    assert!(planned.status.success(), "{out}: {}", stderr(&planned));
}

#[test]
fn init_writes_a_recipe_that_plans_for_each_example_layout() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    let example = repo().join("datasets.example");
    let chest = init(&p, &example.join("chest6"), "chest.toml", &[]);
    plans(&p, "chest.toml");
    // every image of chest6 is 64 x 64 or 80 x 80; the median is 64 x 64
    assert!(chest.contains("image_size = [64, 64]") && chest.contains("64 x 64 (892), 80 x 80 (210)"), "{chest}");
    assert!(chest.contains("group_by = { csv = \"patients.csv\" }") && chest.contains("kind = \"cnn\""), "{chest}");
    assert!(chest.contains("validation_fraction = 0.11") && chest.contains("# kind = \"transfer\""), "{chest}");
    let lungs = init(&p, &example.join("lungs"), "lungs.toml", &[]);
    plans(&p, "lungs.toml");
    assert!(lungs.contains("task = \"segmentation\"") && lungs.contains("kind = \"unet\""), "{lungs}");
    let ct = init(&p, &example.join("ctslices"), "ct.toml", &[]);
    plans(&p, "ct.toml");
    // the synthetic CT slices state no window: a soft-tissue one, not their whole range
    assert!(ct.contains("window = \"mediastinum\"") && ct.contains("none of the 140 CT files read states"), "{ct}");
    assert!(ct.contains("# window = [\"lung\", \"mediastinum\", \"bone\"]"), "{ct}");
    assert!(ct.contains("# group_by = \"auto\"") && ct.contains("patients) keeps"), "{ct}");
    for (folder, out) in [("organs3d/nifti", "nifti.toml"), ("organs3d/decathlon", "decathlon.toml")] {
        let volumes = init(&p, &example.join(folder), out, &[]);
        plans(&p, out);
        assert!(volumes.contains("dims = 3") && volumes.contains("kind = \"unet3d\""), "{volumes}");
    }
}

#[test]
fn init_refuses_a_folder_it_cannot_use_and_a_recipe_it_would_replace() {
    let p = Project::two_classes(2);
    let data = p.path().join("data");
    std::fs::remove_dir_all(data.join("Train/normal")).unwrap();
    let one = p.run(&["init", "data", "--out", "one.toml"]);
    let said = stderr(&one);
    assert_eq!(one.status.code(), Some(2), "{said}");
    assert!(
        said.contains("data: Train/ has one class folder only (cardiomegaly)") && said.contains("add a folder"),
        "{said}"
    );
    assert!(!p.path().join("one.toml").exists());
    let none = p.run(&["init", "nowhere", "--out", "none.toml"]);
    assert!(stderr(&none).contains("nowhere: is not a folder"), "{}", stderr(&none));
    // an existing file is kept unless --force
    std::fs::write(p.path().join("mine.toml"), "# mine\n").unwrap();
    let chest = repo().join("datasets.example/chest6");
    let kept = p.run(&["init", chest.to_str().unwrap(), "--out", "mine.toml"]);
    assert!(
        stderr(&kept).contains("mine.toml: exists already") && stderr(&kept).contains("--force"),
        "{}",
        stderr(&kept)
    );
    assert_eq!(std::fs::read_to_string(p.path().join("mine.toml")).unwrap(), "# mine\n");
    init(&p, &chest, "mine.toml", &["--force"]);
}

#[test]
fn init_proposes_the_median_size_of_mixed_images() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    // 12 training images 48 high and 40 wide, 4 test images 64 x 64: the median is 48 x 40
    for (split, n, (width, height)) in [("Train", 6, (40, 48)), ("Test", 2, (64, 64))] {
        for class in ["nodule", "normal"] {
            let folder = p.path().join("data").join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for k in 0..n {
                let salt = if class == "nodule" { 128 } else { 0 };
                let shade = |x: u32, y: u32| image::Luma([((x * 7 + y * 3 + k * 11 + salt) % 256) as u8]);
                image::GrayImage::from_fn(width, height, shade).save(folder.join(format!("{k}.png"))).unwrap();
            }
        }
    }
    let recipe = init(&p, Path::new("data"), "mixed.toml", &[]);
    plans(&p, "mixed.toml");
    assert!(recipe.contains("image_size = [48, 40]") && recipe.contains("48 x 40 (12), 64 x 64 (4)"), "{recipe}");
    assert!(recipe.contains("each image is resized to it") && recipe.contains("no patient IDs found"), "{recipe}");
}

#[test]
fn the_recipe_init_writes_for_chest6_trains() {
    let p = Project { dir: tempfile::tempdir().unwrap() };
    init(&p, &repo().join("datasets.example/chest6"), "recipe.toml", &[]);
    let trained = p.run(&["recipe.toml", "--quiet", "--set", "train.epochs=1", "--set", "data.image_size=[32,32]"]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(stderr(&trained).contains("1 done"), "{}", stderr(&trained));
}
