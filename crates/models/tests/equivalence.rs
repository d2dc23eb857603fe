//! Transfer backbones against torchvision and timm: the same random weights
//! (saved by tests/reference/backbones.py under torchvision/timm names) must give the
//! same outputs in eval mode, head included, to 1e-4.

use std::path::PathBuf;

use radrun_models::weights::read_tensors;
use radrun_models::{Backbone, ModelSettings, Network, Normalize, TransferSettings, Weights};
use tch::{Device, Tensor};

fn reference_dir() -> Option<PathBuf> {
    radrun_data::testing::reference_dir().map(|d| d.join("backbones"))
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
        assert!(diff <= 1e-4, "{backbone:?}: max |radrun - reference| = {diff}");
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
