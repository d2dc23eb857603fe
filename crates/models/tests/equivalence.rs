//! Transfer backbones against torchvision and timm: the same random weights
//! (saved by tests/reference/backbones.py under torchvision/timm names) must give the
//! same outputs in eval mode, head included, up to float32 rounding.

use std::path::PathBuf;

use radrun_data::testing::network_rounding;
use radrun_models::Network;
use radrun_models::weights::read_tensors;
use radrun_settings::{Backbone, ModelSettings, Normalize, TransferSettings, Weights};
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("backbones"))
}

/// The layers on the longest path of `backbone` with the reference's head (Dense 256,
/// Dense 3), and its widest sum, for [`network_rounding`]: radrun and the reference
/// compute the same layers with kernels of their own.
fn depth_and_terms(backbone: Backbone) -> (u32, u32) {
    match backbone {
        // 17 convolutions; 3 x 3 x 512
        Backbone::Resnet18 => (19, 4608),
        // 1 + 16 x 3 convolutions; 3 x 3 x 512
        Backbone::Resnet50 => (51, 4608),
        // 13 and 16 convolutions; 3 x 3 x 512
        Backbone::Vgg16 => (15, 4608),
        Backbone::Vgg19 => (18, 4608),
        // 5 stem convolutions, then the longest branch of each Mixed block (3 x 3 A, 3 B,
        // 5 x 4 C, 4 D, 3 x 2 E); a 3 x 3 convolution of 448 maps in Mixed_7
        Backbone::InceptionV3 => (49, 4032),
        // 2 convolutions and 34 separable ones (depthwise, then pointwise); the head's
        // 2048 inputs
        Backbone::Xception => (72, 2048),
        // a convolution, 17 inverted residuals (2 + 16 x 3 convolutions), a 1 x 1
        // convolution; the head's 1280 inputs
        Backbone::MobilenetV2 => (54, 1280),
    }
}

fn network(backbone: Backbone, size: i64) -> Network {
    let settings =
        TransferSettings { backbone, weights: Weights::None, normalize: Normalize::None, ..Default::default() };
    Network::build(&ModelSettings::Transfer(settings), [3, size, size], 3, Device::Cpu).unwrap()
}

#[test]
fn every_backbone_reproduces_the_reference_outputs() {
    let Some(dir) = reference_dir() else { return };
    for backbone in Backbone::ALL {
        let weights = dir.join(format!("{}.safetensors", backbone.name()));
        let io: std::collections::HashMap<String, Tensor> =
            read_tensors(&dir.join(format!("{}-io.safetensors", backbone.name()))).unwrap().into_iter().collect();
        let size = io["input"].size()[2];
        let mut net = network(backbone, size);
        // every variable of ours must be in the torchvision/timm file (no renaming)
        net.load(&weights).unwrap_or_else(|e| panic!("{backbone:?}: {e}"));
        let out = tch::no_grad(|| net.forward(&io["input"], false));
        let diff = (&out - &io["output"]).abs().max().double_value(&[]);
        // float32 rounding of the two computations, relative to the largest output (from
        // 1.2e-4 for VGG16 to 4.1e-4 for ResNet50); a wrong layer moves outputs by 1e-2
        let scale = io["output"].abs().max().double_value(&[]).max(1.0);
        let (depth, terms) = depth_and_terms(backbone);
        let bound = network_rounding(depth, terms) * scale;
        assert!(diff <= bound, "{backbone:?}: max |radrun - reference| = {diff} > {bound} (largest output {scale})");
    }
}

#[test]
fn a_pth_state_dict_reads_like_its_safetensors_twin() {
    let Some(dir) = reference_dir() else { return };
    let pth: std::collections::HashMap<String, Tensor> =
        read_tensors(&dir.join("resnet18.pth")).unwrap().into_iter().collect();
    let st: std::collections::HashMap<String, Tensor> =
        read_tensors(&dir.join("resnet18.safetensors")).unwrap().into_iter().collect();
    let mut compared = 0;
    for (name, t) in &st {
        if let Some(p) = pth.get(name) {
            assert!(p.equal(t), "{name} differs");
            compared += 1;
        }
    }
    assert_eq!(compared, st.len() - 4, "every backbone tensor (all but the 4 head tensors) is in the .pth");
}
