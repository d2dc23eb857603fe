//! The tutorial's `build_cnn` and `U_Net` against the same networks written in Keras 3
//! (tests/reference/keras_fidelity.py): for a grid of settings, the same output shape and
//! parameter count at every stage, the same totals, and with the Keras weights (kernels
//! transposed HWIO -> OIHW, the first dense layer's inputs reordered from Keras' flatten
//! order) the same logits in inference, up to float32 rounding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use radrun_data::testing::network_rounding;
use radrun_models::Network;
use radrun_models::weights::read_tensors;
use radrun_settings::{CnnSettings, ModelSettings, UnetSettings};
use serde_json::Value;
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("keras"))
}

fn cases(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Loads the Keras weights, then checks stages, counts and logits against the case;
/// `depth` and `terms` are the longest path and widest sum of the case's network (see
/// [`network_rounding`]): Keras 3 on its torch backend and radrun compute the same layers
/// with kernels of their own (Keras transposes to NHWC and back around each layer).
fn compare(dir: &Path, case: &Value, mut net: Network, (depth, terms): (u32, u32)) {
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
    let bound = network_rounding(depth, terms) * scale;
    assert!(diff <= bound, "{name}: max |radrun - Keras| = {diff} > {bound} (largest logit {scale})");
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
        // every case of the grid: at most 4 blocks of 2 convolutions and 2 dense layers;
        // the widest sum is the first case's dense layer over 64 x 13 x 13 = 10,816
        // inputs (no kernel of the grid sums more than 7 x 7 x 12 = 588): 1.2e-4
        compare(&dir, case, net, (10, 10_816));
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
        // 4 encoder levels and the bottleneck of 2 convolutions, 4 decoder levels of 3
        // (an up-convolution, then 2), the head's 2; the widest sum a 3 x 3 convolution of
        // the bottleneck's 1,024 maps (64 initial features): 2.7e-4
        compare(&dir, case, net, (24, 9216));
    }
    assert_eq!(cases[0]["total_params"], 31_031_685);
}
