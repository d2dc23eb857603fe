//! Parameter counts of the networks against numbers computed by hand (the tutorial's CNN
//! and U-Net, whose Keras model summaries print the same totals) or published by the
//! reference implementations (torchvision and timm for the backbones).

use radrun_models::Network;
use radrun_settings::{Backbone, CnnSettings, ModelSettings, TransferSettings, UnetSettings, Weights};
use tch::Device;

fn learnable(settings: ModelSettings, input: [i64; 3], outputs: i64) -> i64 {
    Network::build(&settings, input, outputs, Device::Cpu).expect("valid settings").summary().parameters
}

#[test]
fn tutorial_cnn_worked_example_has_757_670_parameters() {
    // the tutorial's worked example: input 64x64x1, 6 classes, defaults: convs 320 + 9,248 + 18,496 +
    // 36,928; dense 692,288 + 390.
    assert_eq!(learnable(ModelSettings::Cnn(CnnSettings::default()), [1, 64, 64], 6), 757_670);
}

#[test]
fn cnn_with_three_blocks_matches_hand_count() {
    // 16 maps, 64x64 gray, dense 32, 2 classes. Sizes 64-62-60-30 | 28-26-13 | 11-9-4:
    // 160 + 2,320 | 4,640 + 9,248 | 18,496 + 36,928 | dense 4*4*64*32+32 = 32,800 | 66
    let s = CnnSettings { blocks: 3, feature_maps: 16, dense_units: 32, ..Default::default() };
    assert_eq!(learnable(ModelSettings::Cnn(s.clone()), [1, 64, 64], 2), 104_658);
    // batch norm adds gamma and beta per map: 2 * (16 + 32 + 64)
    let bn = CnnSettings { batch_norm: true, ..s };
    assert_eq!(learnable(ModelSettings::Cnn(bn), [1, 64, 64], 2), 104_882);
}

#[test]
fn cnn_on_rgb_175x250_counts_input_channels() {
    // 175x250x3, defaults, 2 classes: 171x246 -> 85x123 | 81x119 -> 40x59
    // conv1 3*32*9+32 = 896, 9,248, 18,496, 36,928; dense 40*59*64*64+64 = 9,666,624; 130
    let n = learnable(ModelSettings::Cnn(CnnSettings::default()), [3, 175, 250], 2);
    assert_eq!(n, 896 + 9_248 + 18_496 + 36_928 + 9_666_624 + 130);
}

#[test]
fn tutorial_unet_has_31_031_685_parameters() {
    assert_eq!(learnable(ModelSettings::Unet(UnetSettings::default()), [1, 64, 64], 2), 31_031_685);
}

#[test]
fn backbones_without_classifier_match_torchvision_and_timm_counts() {
    // Counts as torchvision/timm report them without the classifier; our head adds
    // Dense(features -> 256) and Dense(256 -> classes), subtracted here.
    let expected = [
        (Backbone::Resnet18, 11_176_512),
        (Backbone::Resnet50, 23_508_032),
        (Backbone::Vgg16, 14_714_688),
        (Backbone::Vgg19, 20_024_384),
        (Backbone::InceptionV3, 21_785_568),
        (Backbone::MobilenetV2, 2_223_872),
        (Backbone::Xception, 20_806_952),
    ];
    for (backbone, count) in expected {
        let s = TransferSettings { backbone, weights: Weights::None, ..Default::default() };
        let head = backbone.facts().feature_channels * 256 + 256 + 256 * 2 + 2;
        let size = backbone.facts().minimum_input;
        assert_eq!(learnable(ModelSettings::Transfer(s), [3, size, size], 2) - head, count, "{backbone:?}");
    }
}
