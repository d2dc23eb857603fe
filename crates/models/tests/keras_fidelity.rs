//! The tutorial's `build_cnn` and `U_Net` against the same networks written in Keras 3
//! (tests/reference/keras_fidelity.py): for a grid of settings, the same output shape and
//! parameter count at every stage, the same totals, and with the Keras weights (kernels
//! transposed HWIO -> OIHW, the first dense layer's inputs reordered from Keras' flatten
//! order) the same logits in inference to 1e-5.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use radrun_models::weights::read_tensors;
use radrun_models::{CnnSettings, ModelSettings, Network, UnetSettings};
use serde_json::Value;
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("keras"))
}

fn cases(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Loads the Keras weights, then checks stages, counts and logits against the case.
fn compare(dir: &Path, case: &Value, mut net: Network) {
    let name = case["name"].as_str().unwrap();
    let summary = net.summary();
    let stages = case["stages"].as_array().unwrap();
    let ours: Vec<(String, Vec<i64>, i64)> =
        summary.rows.iter().map(|r| (r.layer.clone(), r.output_shape.clone(), r.params)).collect();
    let keras: Vec<(String, Vec<i64>, i64)> = stages
        .iter()
        .map(|s| {
            let shape = s["shape"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            (s["layer"].as_str().unwrap().to_string(), shape, s["params"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(ours, keras, "{name}: (stage, output shape, parameters), radrun left, Keras right");
    assert_eq!(summary.total_params, case["total_params"].as_i64().unwrap(), "{name}: Keras' total");
    assert_eq!(summary.parameters, case["trainable_params"].as_i64().unwrap(), "{name}: trainable");

    net.load(&dir.join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let io: HashMap<String, Tensor> =
        read_tensors(&dir.join(format!("{name}-io.safetensors"))).unwrap().into_iter().collect();
    let logits = tch::no_grad(|| net.forward(&io["input"], false));
    assert_eq!(logits.size(), io["logits"].size(), "{name}: logits shape");
    let scale = io["logits"].abs().max().double_value(&[]).max(1.0);
    let diff = (&logits - &io["logits"]).abs().max().double_value(&[]);
    assert!(diff <= 1e-5 * scale, "{name}: max |radrun - Keras| = {diff} (largest logit {scale})");
}

#[test]
fn build_cnn_equals_keras_over_a_grid_of_settings() {
    let Some(dir) = reference_dir().map(|d| d.join("cnn")) else { return };
    let cases = cases(&dir.join("cnn.json"));
    assert_eq!(cases.len(), 8);
    for case in &cases {
        let settings: CnnSettings = serde_json::from_value(case["settings"].clone()).unwrap();
        let input =
            [case["channels"].as_i64().unwrap(), case["height"].as_i64().unwrap(), case["width"].as_i64().unwrap()];
        let classes = case["classes"].as_i64().unwrap();
        let net = Network::build(&ModelSettings::Cnn(settings), input, classes, Device::Cpu).unwrap();
        compare(&dir, case, net);
    }
    // the worked example of REFERENCE.md is the grid's first case
    assert_eq!(cases[0]["total_params"], 757_670);
}

#[test]
fn unet_equals_keras_with_64_and_4_initial_features() {
    let Some(dir) = reference_dir().map(|d| d.join("unet")) else { return };
    let cases = cases(&dir.join("unet.json"));
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let initial_features = case["initial_features"].as_u64().unwrap() as u32;
        let settings = UnetSettings { initial_features, ..Default::default() };
        let input = [1, case["height"].as_i64().unwrap(), case["width"].as_i64().unwrap()];
        let net = Network::build(&ModelSettings::Unet(settings), input, 2, Device::Cpu).unwrap();
        compare(&dir, case, net);
    }
    assert_eq!(cases[0]["total_params"], 31_031_685);
}
