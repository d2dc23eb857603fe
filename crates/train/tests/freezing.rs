//! Phases of transfer learning: a frozen backbone does not move, its batch
//! norms stay in inference mode (running statistics unchanged), and the tutorial's
//! per-backbone unfreezing leaves exactly the intended layers trainable.

use radrun_models::Network;
use radrun_settings::{Backbone, ModelSettings, OptimizerName, TransferSettings, Weights};
use radrun_train::optim::{Optimizer, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn transfer(backbone: Backbone, size: i64) -> Network {
    let s = TransferSettings { backbone, weights: Weights::None, ..Default::default() };
    Network::build(&ModelSettings::Transfer(s), [3, size, size], 2, Device::Cpu).unwrap()
}

fn snapshot(net: &Network) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = net.vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn train_steps(net: &Network, steps: usize) {
    let params: Vec<Tensor> = net.trainable_parameters().into_iter().map(|(_, t)| t).collect();
    let config = OptimizerConfig {
        name: OptimizerName::Adam,
        learning_rate: 1e-2,
        momentum: 0.0,
        nesterov: false,
        rho: 0.9,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(config, params);
    tch::manual_seed(3);
    for _ in 0..steps {
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 3.0;
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        opt.minimize(&radrun_train::loss::cross_entropy(&net.forward(&x, true), &y, None, 0.0), None);
    }
}

#[test]
fn a_frozen_backbone_and_its_batch_norm_statistics_do_not_move() {
    let mut net = transfer(Backbone::Resnet18, 32);
    let tops: Vec<String> =
        ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"].iter().map(|s| s.to_string()).collect();
    net.set_frozen(tops);
    assert!(net.trainable_parameters().iter().all(|(n, _)| n.starts_with("head.")));
    let before = snapshot(&net);
    train_steps(&net, 3);
    let after = snapshot(&net);
    let mut moved_head = false;
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        let same = a.equal(b);
        if name.starts_with("head.") {
            moved_head |= !same;
        } else {
            assert!(same, "{name} changed while the backbone was frozen");
        }
    }
    assert!(moved_head, "the head trains");
    // unfrozen: batch-norm statistics now follow the batches
    net.set_frozen(Vec::new());
    train_steps(&net, 1);
    let mean = "layer1.0.bn1.running_mean";
    let b = before.iter().find(|(n, _)| n == mean).unwrap();
    assert!(!net.vs.variables()[mean].equal(&b.1), "unfrozen batch norm updates its statistics");
}

#[test]
fn the_tutorial_fine_tuning_rule_unfreezes_vgg16_block5_only() {
    let mut net = transfer(Backbone::Vgg16, 32);
    net.set_frozen(Backbone::Vgg16.tutorial_frozen());
    let trainable: Vec<String> = net.trainable_parameters().into_iter().map(|(n, _)| n).collect();
    let backbone: Vec<&String> = trainable.iter().filter(|n| !n.starts_with("head.")).collect();
    assert_eq!(
        backbone,
        [
            "features.24.bias",
            "features.24.weight",
            "features.26.bias",
            "features.26.weight",
            "features.28.bias",
            "features.28.weight"
        ]
    );
    // 3 x (512 x 512 x 9 + 512) in block 5, plus the head 512*256+256 + 256*2+2
    assert_eq!(net.summary().trainable_params, 3 * (512 * 512 * 9 + 512) + 512 * 256 + 256 + 256 * 2 + 2);
    let mut xception = transfer(Backbone::Xception, 71);
    xception.set_frozen(Backbone::Xception.tutorial_frozen());
    let names: Vec<String> = xception.trainable_parameters().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.starts_with("block10.rep.4."))
            && !names.iter().any(|n| n.starts_with("block10.rep.1.") || n.starts_with("block9."))
    );
}
