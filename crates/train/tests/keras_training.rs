//! Training itself against Keras 3 (tests/reference/keras_fidelity.py): the tutorial's
//! CNN without dropout, started from Keras' initial weights and fed the same twelve
//! batches, has the same loss at every step (forward, softmax cross-entropy, backward,
//! optimizer and batch norm in training mode together), the same weights and batch-norm
//! statistics after training, and the same logits on held-out
//! images afterwards: Adam, and SGD with momentum through batch norm.

use std::collections::HashMap;

use radrun_models::Network;
use radrun_models::weights::read_tensors;
use radrun_settings::{CnnSettings, ModelSettings, OptimizerName};
use radrun_train::loss::cross_entropy;
use radrun_train::optim::{Optimizer, OptimizerConfig};
use serde_json::Value;
use tch::{Device, Tensor};

/// Values per channel that a batch-norm layer of the reference network sees in a batch
/// of 8 images of 30 x 38: 26 x 34 after block 1's convolutions, 9 x 13 after block 2's.
fn values_per_channel(variable: &str) -> Option<f64> {
    match variable {
        "block1.batch_norm.running_var" => Some(8.0 * 26.0 * 34.0),
        "block2.batch_norm.running_var" => Some(8.0 * 9.0 * 13.0),
        _ => None,
    }
}

#[test]
fn twelve_steps_follow_keras_step_by_step() {
    let Some(dir) = radrun_data::testing::reference_dir().map(|d| d.join("keras/training")) else { return };
    let path = dir.join("training.json");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let settings: CnnSettings = serde_json::from_value(case["settings"].clone()).unwrap();
        let input = [1, case["height"].as_i64().unwrap(), case["width"].as_i64().unwrap()];
        let mut net =
            Network::build(&ModelSettings::Cnn(settings), input, case["classes"].as_i64().unwrap(), Device::Cpu)
                .unwrap();
        let file = dir.join(format!("{name}.safetensors"));
        net.load(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data: HashMap<String, Tensor> = read_tensors(&file).unwrap().into_iter().collect();
        let optimizer: OptimizerName = serde_json::from_value(case["optimizer"].clone()).unwrap();
        let config = OptimizerConfig {
            name: optimizer,
            learning_rate: case["learning_rate"].as_f64().unwrap(),
            momentum: case["momentum"].as_f64().unwrap(),
            nesterov: false,
            rho: 0.9,
            weight_decay: 0.0,
        };
        let params = net.trainable_parameters().into_iter().map(|(_, t)| t).collect();
        let mut optimizer = Optimizer::new(config, params);

        let keras_losses: Vec<f64> = case["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut ours = Vec::new();
        for step in 0..keras_losses.len() as i64 {
            let logits = net.forward(&data["images"].get(step), true);
            let loss = cross_entropy(&logits, &data["labels"].get(step), None, 0.0);
            optimizer.minimize(&loss, None);
            ours.push(loss.double_value(&[]));
        }
        // Keras 3 (torch backend) and radrun run the same layers with kernels of their own:
        // the logits of a step differ by network_rounding(6, 192) = 1e-5 of their magnitude
        // (4 convolutions and 2 dense layers, the widest sum the dense layer's 8 x 4 x 6
        // inputs; batch norm's statistics sum 8 x 26 x 34 values, sqrt(7072) x 1.2e-7 = 1e-5
        // more), the loss by as much (a cross-entropy moves by at most the largest move of a
        // logit), and the weights of earlier steps by that fraction of the rate (Adam 1e-3,
        // SGD 0.03 with momentum 0.9: ten steps' worth), which moves the loss by as little
        // again; 1e-4 of the loss is well above that (1e-6 measured, docs/fidelity.md) and
        // below what a wrong gradient or update rule does in twelve steps
        for (step, (a, b)) in ours.iter().zip(&keras_losses).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{name} step {}: loss {a} vs Keras {b}", step + 1);
        }
        let steps = keras_losses.len() as i32;
        for (variable, value) in net.vs.variables() {
            if let Some(n) = values_per_channel(&variable) {
                // PyTorch updates the running variance with the unbiased batch variance,
                // Keras with the biased one (docs/fidelity.md): converted to Keras' here, from the
                // initial 1 and Keras' momentum 0.99
                let kept = 0.99f64.powi(steps);
                let keras = (&value - kept) * ((n - 1.0) / n) + kept;
                tch::no_grad(|| value.shallow_clone().copy_(&keras));
            }
            let theirs = &data[&format!("trained.{variable}")];
            let diff = (&value - theirs).abs().max().double_value(&[]);
            let scale = theirs.abs().max().double_value(&[]);
            // 1e-4 of the largest value: the drift of the weights above, twelve steps of the
            // rate times a gradient rounded to 1e-5 of itself, with a wide margin. Plus 1e-5:
            // a bias just before batch norm has a gradient of zero up to rounding, so both
            // frameworks move it by their own rounding noise
            assert!(
                diff <= 1e-4 * scale + 1e-5,
                "{name}: {variable} differs by {diff} after training (largest value {scale})"
            );
        }
        let logits = tch::no_grad(|| net.forward(&data["held_out"], false));
        let diff = (&logits - &data["logits"]).abs().max().double_value(&[]);
        // The weights' drift above (1e-5 of them, and the 1e-5 of a bias before batch norm)
        // and this forward pass's rounding (1e-5 of the logits) move logits of order one by
        // a few 1e-5: 1e-4. With batch norm, the rounding noise of the bias before it is
        // divided by the running standard deviation, and the running statistics carry
        // twelve steps of batch statistics: 1e-3 then
        let tolerance = if case["settings"]["batch_norm"] == true { 1e-3 } else { 1e-4 };
        assert!(diff <= tolerance, "{name}: held-out logits differ by {diff} after training");
    }
}
