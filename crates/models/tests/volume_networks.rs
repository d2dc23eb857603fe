//! The 3D networks against plain PyTorch (tests/reference/segmentation3d.py): the same
//! random weights, loaded under radrun's names (every variable must be there with its
//! shape, so the levels nnU-Net's rule plans must be the ones written out by hand in the
//! reference), must give the same eval-mode outputs up to float32 rounding, with the same
//! parameter count; and the blocks radrun's U-Net shares with MONAI's BasicUNet must
//! count as many parameters as MONAI's. Deep supervision adds one 1x1x1 head per
//! supervised decoder level, whose outputs come only while training, at that level's
//! resolution.

use std::collections::HashMap;
use std::path::PathBuf;

use radrun_data::testing::network_rounding;
use radrun_models::Network;
use radrun_models::weights::read_tensors;
use radrun_settings::{CnnSettings, ModelSettings, Norm, Unet3dSettings, Upsampling};
use serde_json::Value;
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("segmentation3d"))
}

fn networks(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("networks.json")).unwrap()).unwrap()
}

fn shape4(v: &Value) -> [i64; 4] {
    let s: Vec<i64> = v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    [s[0], s[1], s[2], s[3]]
}

fn model(case: &Value) -> ModelSettings {
    let s = case["settings"].clone();
    if case["kind"] == "cnn3d" {
        ModelSettings::Cnn3d(serde_json::from_value::<CnnSettings>(s).unwrap())
    } else {
        ModelSettings::Unet3d(serde_json::from_value::<Unet3dSettings>(s).unwrap())
    }
}

/// The network of reference case `name`, with the reference's weights.
fn reference_network(dir: &std::path::Path, name: &str) -> Network {
    let case = &networks(dir)["networks"][name];
    let spacing: Vec<f64> =
        case["spacing"].as_array().map_or(vec![1.0; 3], |s| s.iter().map(|x| x.as_f64().unwrap()).collect());
    let outputs = case["outputs"].as_i64().unwrap();
    let mut net = Network::build_volume(
        &model(case),
        shape4(&case["input"]),
        [spacing[0], spacing[1], spacing[2]],
        outputs,
        Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    net.load(&dir.join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    net
}

/// Layers on the longest path and the widest sum of products, for [`network_rounding`].
fn depth_and_terms(net: &Network) -> (u32, u32) {
    let vars = net.vs.variables();
    let weights: Vec<&Tensor> =
        vars.iter().filter(|(n, t)| n.ends_with(".weight") && t.dim() > 1).map(|(_, t)| t).collect();
    let terms = weights.iter().map(|t| t.size()[1..].iter().product::<i64>()).max().unwrap();
    (weights.len() as u32, terms as u32)
}

#[test]
fn the_3d_networks_reproduce_plain_pytorch() {
    let Some(dir) = reference_dir() else { return };
    let all = networks(&dir);
    let cases = all["networks"].as_object().unwrap();
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let net = reference_network(&dir, name);
        let summary = net.summary();
        assert_eq!(summary.parameters, case["parameters"].as_i64().unwrap(), "{name}: parameter count");
        let io: HashMap<String, Tensor> =
            read_tensors(&dir.join(format!("{name}-io.safetensors"))).unwrap().into_iter().collect();
        let out = tch::no_grad(|| net.forward(&io["input"], false));
        assert_eq!(out.size(), io["output"].size(), "{name}");
        let diff = (&out - &io["output"]).abs().max().double_value(&[]);
        let scale = io["output"].abs().max().double_value(&[]).max(1.0);
        let (depth, terms) = depth_and_terms(&net);
        let bound = network_rounding(depth, terms) * scale;
        assert!(diff <= bound, "{name}: max |radrun - PyTorch| = {diff} > {bound} (largest output {scale})");
    }
}

#[test]
fn the_unet3d_blocks_count_as_many_parameters_as_monai_basic_unet() {
    let Some(dir) = reference_dir() else { return };
    let monai = &networks(&dir)["monai_basic_unet"];
    let settings = Unet3dSettings {
        initial_features: monai["features"].as_u64().unwrap() as u32,
        depth: 4,
        norm: Norm::Instance,
        dropout: 0.0,
        upsampling: Upsampling::Transposed,
        deep_supervision: false,
    };
    let channels = monai["channels"].as_i64().unwrap();
    let net = Network::build_volume(
        &ModelSettings::Unet3d(settings),
        [channels, 64, 64, 64],
        [1.0, 1.0, 1.0],
        monai["outputs"].as_i64().unwrap(),
        Device::Cpu,
    )
    .unwrap();
    let rows: HashMap<String, i64> = net.summary().rows.into_iter().map(|r| (r.layer, r.params)).collect();
    let blocks = monai["blocks"].as_object().unwrap();
    assert_eq!(blocks.len(), 8);
    for (block, count) in blocks {
        assert_eq!(rows[block], count.as_i64().unwrap(), "{block}: radrun vs MONAI BasicUNet");
    }
}

#[test]
fn deep_supervision_heads_sit_on_the_middle_decoder_levels_and_speak_only_in_training() {
    let unet = |deep_supervision| {
        let settings = Unet3dSettings { initial_features: 4, depth: 4, deep_supervision, ..Default::default() };
        tch::manual_seed(3);
        Network::build_volume(&ModelSettings::Unet3d(settings), [1, 64, 64, 64], [1.0; 3], 3, Device::Cpu).unwrap()
    };
    let (supervised, plain) = (unet(true), unet(false));
    let count = |net: &Network| net.trainable_parameters().iter().map(|(_, t)| t.numel() as i64).sum::<i64>();
    // decoder levels 2 and 3 (8 and 16 maps) each get a 1x1x1 convolution to 3 label
    // maps; level 1 is the network's own head, level 4 nnU-Net weighs 0
    assert_eq!(count(&supervised) - count(&plain), (8 * 3 + 3) + (16 * 3 + 3));
    // the model summary lists them, its rows adding up to the network's parameters
    let summary = supervised.summary();
    let rows: HashMap<String, i64> = summary.rows.iter().map(|r| (r.layer.clone(), r.params)).collect();
    assert_eq!((rows["supervision2"], rows["supervision3"]), (8 * 3 + 3, 16 * 3 + 3));
    assert_eq!(summary.rows.iter().map(|r| r.params).sum::<i64>(), count(&supervised));
    let x = Tensor::randn([1, 1, 64, 64, 64], (tch::Kind::Float, Device::Cpu));
    let (out, auxiliary) = supervised.forward_supervised(&x, true);
    assert_eq!(out.size(), [1, 3, 64, 64, 64]);
    let shapes: Vec<Vec<i64>> = auxiliary.iter().map(Tensor::size).collect();
    assert_eq!(shapes, [vec![1, 3, 32, 32, 32], vec![1, 3, 16, 16, 16]], "the highest resolution first");
    let (_, none) = supervised.forward_supervised(&x, false);
    assert!(none.is_empty(), "no auxiliary outputs in inference");
}
