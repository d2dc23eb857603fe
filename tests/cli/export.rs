//! `radrun export`: a backbone run's weights and its TorchScript file give,
//! in PyTorch itself, the probabilities `radrun predict` gives.

use std::process::Command;

use radrun_data::testing::network_rounding;

use crate::common::{Project, TINY, only_run, repo, stderr};

#[test]
fn a_backbone_run_loads_in_pytorch_with_radruns_probabilities() {
    let p = Project::new(3);
    let recipe = format!(
        "{}\n[[train.phases]]\nname = \"all\"\nepochs = 1\noptimizer = \"adam\"\ntrainable = \"all\"\n",
        TINY.replace(
            "kind = \"cnn\"\nfeature_maps = 8\ndense_units = 16",
            "kind = \"transfer\"\nbackbone = \"resnet18\"\nweights = \"none\"\nhead_units = 16"
        )
        .replace("epochs = 2\n", "")
    );
    let name = p.recipe("backbone.toml", &recipe);
    let out = p.run(&[&name, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = only_run(&p, "backbone");
    let run_arg = run.to_str().unwrap();

    let predicted = p.run(&["predict", run_arg, "data/Test", "--out", "p.csv"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let exported = p.run(&["export", run_arg, "--out", "export/model.pt"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let weights = p.run(&["export", run_arg, "--format", "safetensors"]);
    assert!(weights.status.success(), "{}", stderr(&weights));
    let run_id = run.file_name().unwrap().to_string_lossy();
    assert_eq!(
        std::fs::read(p.path().join(format!("{run_id}.safetensors"))).unwrap(),
        std::fs::read(run.join("best.safetensors")).unwrap(),
        "the safetensors export is the weights the run evaluated, under its run id by default"
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("export/model.pt.json")).unwrap()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("data_summary.json")).unwrap()).unwrap();
    assert_eq!(card["classes"], summary["classes"]);
    assert_eq!(card["format"], "torchscript");
    assert_eq!(card["data"]["image_size"], serde_json::json!([32, 32]));
    assert_eq!(card["normalize"]["mean"], serde_json::json!([0.485, 0.456, 0.406]));

    for (args, says) in [
        (vec!["export", run_arg, "--format", "onnx"], "does not write ONNX"),
        (vec!["export", run_arg, "--out", &format!("{run_arg}/model.pt")], "inside the run folder"),
        (vec!["export", "runs/backbone"], "not of a finished run"),
    ] {
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(!run.join("model.pt").exists());

    let Some(venv) = radrun_data::testing::venv() else { return };
    let script = repo().join("tests/python/load_in_pytorch.py");
    let checked = Command::new(venv.join("bin/python"))
        .args([script.to_str().unwrap(), run_arg, "export/model.pt", "p.csv"])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", stderr(&checked));
    let result: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert!(result["images"].as_u64().unwrap() >= 3, "{result}");
    // Two float32 computations of one ResNet18 by different paths (traced and frozen, which
    // may fold batch norm into the convolutions; torchvision eager; radrun's) on batches of
    // other sizes: other kernels and summation orders, more so on another CPU. Its longest
    // path is 19 layers (17 convolutions, the head's 2 dense) and its widest sum a
    // 3 x 3 x 512 = 4,608-term convolution, so logits move by at most
    // network_rounding(19, 4608) = 1.5e-4 of the largest logit's magnitude (at least 1); a
    // probability by at most half the largest move of a logit (|dp_i| <= p_i (1 - p_i) x
    // 2 max |dz|). A wrong normalisation, resize or head mapping moves probabilities by
    // 1e-2 and more.
    let largest_logit = result["largest_logit"].as_f64().unwrap().max(1.0);
    let bound = network_rounding(19, 4608) * largest_logit / 2.0;
    for way in ["torchscript", "torchvision"] {
        let difference = result[way].as_f64().unwrap();
        assert!(difference <= bound, "{way}: probabilities differ from radrun predict's by {difference} (> {bound})");
    }
}
