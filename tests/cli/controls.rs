//! Training controls: schedules with warm-up, early stopping, clipping and
//! weight decay as a recipe writes them, the learning rate of every epoch in
//! metrics.csv, and errors that name the key.

use crate::common::{Project, TINY, assert_close, only_run, refused, stderr};

/// metrics.csv's column `name`, one value per epoch.
fn column(p: &Project, recipe: &str, name: &str) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(only_run(p, recipe).join("metrics.csv")).unwrap();
    let at = reader.headers().unwrap().iter().position(|c| c == name).unwrap();
    reader.records().map(|r| r.unwrap()[at].parse().unwrap()).collect()
}

fn train(p: &Project, name: &str, train_keys: &str) {
    let text = TINY.replace("[train]\n", &format!("[train]\n{train_keys}\n"));
    let name = p.recipe(&format!("{name}.toml"), &text);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn schedules_and_warm_up_set_each_epochs_rate() {
    let p = Project::new(2);
    train(
        &p,
        "step",
        "learning_rate = 0.01\nschedule = { kind = \"step\", every = 1, factor = 0.5 }\ngradient_clip = { norm = 1.0 }\nweight_decay = 0.01",
    );
    // exactly: halving a float64 is exact, and metrics.csv writes the shortest decimal
    // that reads back as the same float64
    assert_eq!(column(&p, "step", "lr"), [0.01, 0.005]);
    // warm-up epoch at half the rate, then cosine from the full rate
    let keys = "learning_rate = 0.01\nwarmup_epochs = 1\nschedule = \"cosine\"";
    let text = TINY.replace("epochs = 2", "epochs = 3").replace("[train]\n", &format!("[train]\n{keys}\n"));
    let name = p.recipe("cosine3.toml", &text);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rates = column(&p, "cosine3", "lr");
    let want = [0.005, 0.01, 0.005];
    // float64 cosines and products of rates near 0.01: a few roundings of 1.7e-18 each;
    // 1e-12 leaves room for the cosine's last digits and tells any other rate apart
    assert_close(&rates, &want, 1e-12, "learning rates");
}

#[test]
fn early_stopping_ends_training_when_the_metric_stops_improving() {
    let p = Project::new(2);
    // no epoch can improve val_loss by 100: training stops after the second epoch
    let keys = "early_stopping = { metric = \"val_loss\", patience = 1, min_delta = 100.0 }";
    let text = TINY.replace("epochs = 2", "epochs = 8").replace("[train]\n", &format!("[train]\n{keys}\n"));
    let name = p.recipe("patient.toml", &text);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(column(&p, "patient", "epoch"), [1.0, 2.0]);
    let log = std::fs::read_to_string(only_run(&p, "patient").join("train.log")).unwrap();
    assert!(log.contains("early stopping: phase \"train\" ends after epoch 2 (val_loss best"), "{log}");
    let resolved = std::fs::read_to_string(only_run(&p, "patient").join("recipe.toml")).unwrap();
    assert!(resolved.contains("mode = \"min\""), "the resolved recipe states the mode:\n{resolved}");
}

#[test]
fn control_mistakes_name_the_key() {
    let p = Project::new(1);
    let with = |keys: &str| TINY.replace("[train]\n", &format!("[train]\n{keys}\n"));
    let typo = refused(&p, &with("schedule = { kind = \"step\", evry = 2, factor = 0.5 }"), &[]);
    assert!(typo.contains("train.schedule") && typo.contains("evry"), "{typo}");
    let name = refused(&p, &with("schedule = \"stepwise\""), &[]);
    assert!(name.contains("unknown schedule \"stepwise\""), "{name}");
    let factor = refused(&p, &with("schedule = { kind = \"step\", every = 2, factor = 2.0 }"), &[]);
    assert!(factor.contains("`train.schedule`") && factor.contains("`factor` must be in (0, 1)"), "{factor}");
    let warmup = refused(&p, &with("warmup_epochs = 2"), &[]);
    assert!(warmup.contains("`train.warmup_epochs` is 2, which leaves none of the phase's 2 epochs"), "{warmup}");
    let metric = refused(&p, &with("early_stopping = { metric = \"val_dice\" }"), &[]);
    assert!(metric.contains("`train.early_stopping.metric`") && metric.contains("segmentation"), "{metric}");
    let clip = refused(&p, &with("gradient_clip = { norm = 0.0 }"), &[]);
    assert!(clip.contains("`train.gradient_clip.norm` must be a positive number"), "{clip}");
}
