//! `train.precision` and `train.channels_last` on the CPU: bfloat16 autocast
//! trains the tutorial's CNN to the accuracy float32 reaches (and is not float32 in
//! disguise), and NHWC images and kernels give the logits and the training of NCHW.

use radrun_data::testing::network_rounding;
use radrun_data::{DataSettings, Dataset, SplitSettings};
use radrun_metrics::EpochRecord;
use radrun_models::Network;
use radrun_settings::{ChannelsLast, CnnSettings, LearningRate, ModelSettings, Precision, TrainRecipe};
use radrun_train::precision::{channels_last, is_channels_last, lay_out_channels_last};
use radrun_train::{FitConfig, Observer, fit};
use tch::{Device, Kind, Tensor};

const SIZE: u32 = 24;

/// Two classes a CNN separates in a few epochs: noise with or without a bright disc
/// placed anywhere. 60 training and 20 test images per class.
fn discs() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 12345u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for (split, count) in [("Train", 60), ("Test", 20)] {
        for class in ["disc", "none"] {
            let folder = dir.path().join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let (cx, cy) = (6.0 + next() * 12.0, 6.0 + next() * 12.0);
                let mut noise = Vec::with_capacity((SIZE * SIZE) as usize);
                for _ in 0..SIZE * SIZE {
                    noise.push(next() * 90.0);
                }
                let image = image::GrayImage::from_fn(SIZE, SIZE, |x, y| {
                    let inside = class == "disc" && (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) < 16.0;
                    image::Luma([(noise[(y * SIZE + x) as usize] + if inside { 120.0 } else { 0.0 }) as u8])
                });
                image.save(folder.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
    let settings = DataSettings { root: dir.path().to_path_buf(), image_size: [SIZE, SIZE], ..Default::default() };
    let dataset = radrun_data::load(&settings, &SplitSettings::default()).unwrap();
    (dir, dataset)
}

fn model() -> ModelSettings {
    ModelSettings::Cnn(CnnSettings { feature_maps: 8, dense_units: 16, dropout: 0.0, ..Default::default() })
}

struct Quiet;
impl Observer for Quiet {}

/// libtorch's generator is one per process, and training seeds it before every batch:
/// two tests training at once would draw each other's numbers (the weights one starts
/// from, then), so the tests here train one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The epochs of training the CNN on `dataset` with these settings.
fn train(dataset: &Dataset, epochs: u32, precision: Precision, layout: ChannelsLast) -> Vec<EpochRecord> {
    tch::manual_seed(7);
    let recipe = TrainRecipe {
        epochs: Some(epochs),
        batch_size: Some(8),
        learning_rate: Some(LearningRate::Value(3e-3)),
        precision,
        channels_last: layout,
        ..Default::default()
    };
    let settings = recipe.resolve(&model()).unwrap();
    let mut network = Network::build(&model(), [1, SIZE as i64, SIZE as i64], 2, Device::Cpu).unwrap();
    let config = FitConfig {
        settings: &settings,
        model: &model(),
        augment: None,
        channels: 1,
        device: Device::Cpu,
        class_weights: None,
        stop: &|| false,
        checkpoint_every: std::time::Duration::from_secs(3600),
    };
    fit(&mut network, dataset, &config, &mut Quiet, None).unwrap().epochs
}

#[test]
fn bf16_trains_the_cnn_to_the_accuracy_of_fp32() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, dataset) = discs();
    let fp32 = train(&dataset, 8, Precision::Fp32, ChannelsLast::Off);
    let bf16 = train(&dataset, 8, Precision::Bf16, ChannelsLast::Off);
    let (a, b) = (fp32.last().unwrap(), bf16.last().unwrap());
    assert!(
        a.val_accuracy >= 0.9,
        "fp32 learns the discs: {:?}",
        fp32.iter().map(|r| r.val_accuracy).collect::<Vec<_>>()
    );
    assert!(b.val_accuracy >= a.val_accuracy - 0.05, "bf16 {} vs fp32 {}", b.val_accuracy, a.val_accuracy);
    // bf16 products round to 8 bits of mantissa (relative steps of 3.9e-3): the losses
    // differ from the first epoch by far more than float32 rounding (1e-6 of a loss near 1)
    assert!((fp32[0].train_loss - bf16[0].train_loss).abs() > 1e-5, "{} {}", fp32[0].train_loss, bf16[0].train_loss);
}

#[test]
fn channels_last_gives_the_logits_and_the_training_of_nchw() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, dataset) = discs();
    tch::manual_seed(3);
    let network = Network::build(&model(), [1, SIZE as i64, SIZE as i64], 2, Device::Cpu).unwrap();
    let x = Tensor::rand([5, 1, SIZE as i64, SIZE as i64], (Kind::Float, Device::Cpu));
    let nchw = network.forward(&x, false);
    lay_out_channels_last(&network);
    // (a kernel of one input channel is the same in memory either way)
    let kernels: Vec<Tensor> =
        network.vs.variables().into_values().filter(|t| t.dim() == 4 && t.size()[1] > 1).collect();
    assert!(!kernels.is_empty() && kernels.iter().all(is_channels_last));
    let nhwc = network.forward(&channels_last(&x), false);
    let gap = (&nchw - &nhwc).abs().max().double_value(&[]);
    // other kernels (NHWC), other summation orders: 6 layers (4 convolutions, 2 dense),
    // the widest sums of 144 terms (3 x 3 x 16 in block 2; 16 x 3 x 3 into the dense layer),
    // relative to the largest logit (see network_rounding): 8.6e-6 for logits of order one
    let bound = network_rounding(6, 144) * nchw.abs().max().double_value(&[]).max(1.0);
    assert!(gap <= bound, "{gap} > {bound}");

    let off = train(&dataset, 2, Precision::Fp32, ChannelsLast::Off);
    let on = train(&dataset, 2, Precision::Fp32, ChannelsLast::On);
    // each step's rounding (above: 9e-6 of the logits, as much of the gradients) moves
    // Adam's step by that fraction of the rate (3e-3): over two epochs (under 30 steps)
    // the weights stay within 1e-6 of each other, which moves the validation loss by a
    // few 1e-5 at most; 1e-4 of it covers that and tells a layout that trains otherwise
    for (a, b) in off.iter().zip(&on) {
        assert!((a.val_loss - b.val_loss).abs() < 1e-4 * a.val_loss.max(1.0), "{} vs {}", a.val_loss, b.val_loss);
    }
}
