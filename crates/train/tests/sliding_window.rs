//! Sliding-window inference against MONAI's `sliding_window_inference` (reference:
//! tests/reference/segmentation3d.py) on fixed networks and volumes: Gaussian and
//! constant blending, two overlaps, a volume thinner than the patch, and mirroring as a
//! predictor that averages the flipped predictions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use radrun_data::testing::network_rounding;
use radrun_models::Network;
use radrun_models::weights::read_tensors;
use radrun_settings::{ModelSettings, Unet3dSettings};
use radrun_train::sliding_window::{Blend, SlidingWindow, infer};
use serde_json::Value;
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("segmentation3d"))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    read_tensors(path).unwrap().into_iter().collect()
}

/// The reference's anisotropic 3D U-Net with its weights.
fn unet(dir: &Path) -> Network {
    let case = &json(&dir.join("networks.json"))["networks"]["unet3d-anisotropic"];
    let settings: Unet3dSettings = serde_json::from_value(case["settings"].clone()).unwrap();
    let input: Vec<i64> = case["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let mut net = Network::build_volume(
        &ModelSettings::Unet3d(settings),
        [input[0], input[1], input[2], input[3]],
        [3.0, 1.0, 1.0],
        case["outputs"].as_i64().unwrap(),
        Device::Cpu,
    )
    .unwrap();
    net.load(&dir.join("unet3d-anisotropic.safetensors")).unwrap();
    net
}

#[test]
fn sliding_window_inference_equals_monai() {
    let Some(dir) = reference_dir() else { return };
    let cases = json(&dir.join("sliding_window.json"));
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let conv = tensors(&dir.join("sliding_window-conv.safetensors"));
    let net = unet(&dir);
    for (n, case) in cases.iter().enumerate() {
        let io = tensors(&dir.join(format!("sliding_window-{n}.safetensors")));
        let patch: Vec<i64> = case["patch"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let window = SlidingWindow {
            patch: [patch[0], patch[1], patch[2]],
            overlap: case["overlap"].as_f64().unwrap(),
            blend: if case["blend"] == "gaussian" { Blend::Gaussian } else { Blend::Constant },
            mirror_axes: case["mirror_axes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect(),
            batch: 2,
        };
        let (out, (depth, terms)) = if case["network"] == "conv" {
            let mut predict = |x: &Tensor| x.conv3d(&conv["weight"], Some(&conv["bias"]), [1], [1], [1], 1);
            // one convolution of 2 x 27 products
            (infer(&io["input"], &window, Device::Cpu, &mut predict), (1, 54))
        } else {
            let mut predict = |x: &Tensor| net.forward(x, false);
            // 19 convolutions on the longest path, the widest of 2 x 16 x 27 products
            (infer(&io["input"], &window, Device::Cpu, &mut predict), (19, 864))
        };
        assert_eq!(out.size(), io["output"].size(), "case {n}");
        let scale = io["output"].abs().max().double_value(&[]).max(1.0);
        // the network's own rounding, then the blending: a weighted mean over at most 8
        // windows per voxel and up to 8 mirrored predictions, a few float32 roundings
        let bound = (network_rounding(depth, terms) + 16.0 * f64::from(f32::EPSILON)) * scale;
        let diff = (&out - &io["output"]).abs().max().double_value(&[]);
        assert!(diff <= bound, "case {n} ({}): max |radrun - MONAI| = {diff} > {bound}", case["network"]);
        // the stitching alone (a single convolution) is within the 1e-5
        if case["network"] == "conv" {
            assert!(diff <= 1e-5 * scale, "case {n}: {diff} is above 1e-5");
        }
    }
}
