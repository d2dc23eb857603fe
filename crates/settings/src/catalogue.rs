//! The backbone catalogue: every fact radrun holds about each ImageNet backbone (its
//! recipe name, smallest input, feature channels, input normalisation, the tutorial's
//! fine-tuning rule, where its official weights come from and their checksum) in one
//! table. Adding a backbone means adding a variant and its row; the compiler then asks
//! for its architecture in [`crate::backbones`].

use serde::{Deserialize, Serialize};

/// ImageNet backbones for transfer learning (torchvision layouts; Xception is timm's
/// `legacy_xception`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    Resnet18,
    Resnet50,
    Vgg16,
    Vgg19,
    InceptionV3,
    Xception,
    MobilenetV2,
}

/// Where a backbone's official ImageNet weights are downloaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsSource {
    pub url: &'static str,
    /// Expected SHA-256: a prefix of it for torchvision (its file names carry the first
    /// 8 hex digits), or `None` to take the hub's `X-Linked-Etag` (the SHA-256 of the file).
    pub sha256_prefix: Option<&'static str>,
}

/// Everything known about one backbone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackboneFacts {
    /// The name used in recipes and by `radrun weights`.
    pub name: &'static str,
    /// Smallest image side it accepts (its downsampling must leave at least one pixel).
    pub minimum_input: i64,
    /// Channels it takes: gray images are repeated to this many.
    pub input_channels: i64,
    /// Channels of the feature maps it returns.
    pub feature_channels: i64,
    /// Per-channel (mean, std) its ImageNet weights were trained with.
    pub normalization: ([f64; 3], [f64; 3]),
    /// Layers that stay frozen in a `trainable = "tutorial"` phase: the tutorial's
    /// fine-tuning rule expressed on our layer names (see [`Backbone::ALL`]'s rows).
    pub tutorial_frozen: &'static [&'static str],
    pub weights: WeightsSource,
}

const IMAGENET: ([f64; 3], [f64; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
/// torchvision's Inception v3 weights expect `transform_input`, and timm's legacy_xception
/// weights mean = std = 0.5: both map [0, 1] to [-1, 1].
const MINUS_ONE_TO_ONE: ([f64; 3], [f64; 3]) = ([0.5; 3], [0.5; 3]);

const fn torchvision(url: &'static str, sha256_prefix: &'static str) -> WeightsSource {
    WeightsSource { url, sha256_prefix: Some(sha256_prefix) }
}

const RESNET18: BackboneFacts = BackboneFacts {
    name: "resnet18",
    minimum_input: 32,
    input_channels: 3,
    feature_channels: 512,
    normalization: IMAGENET,
    // the tutorial fine-tuned ResNets whole
    tutorial_frozen: &[],
    weights: torchvision("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd"),
};

const RESNET50: BackboneFacts = BackboneFacts {
    name: "resnet50",
    feature_channels: 2048,
    weights: torchvision("https://download.pytorch.org/models/resnet50-0676ba61.pth", "0676ba61"),
    ..RESNET18
};

const VGG16: BackboneFacts = BackboneFacts {
    name: "vgg16",
    // Keras layers from index 15 (block5) on were trainable: the first 10 convolutions
    // stay frozen.
    tutorial_frozen: &[
        "features.0",
        "features.2",
        "features.5",
        "features.7",
        "features.10",
        "features.12",
        "features.14",
        "features.17",
        "features.19",
        "features.21",
    ],
    weights: torchvision("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
    ..RESNET18
};

const VGG19: BackboneFacts = BackboneFacts {
    name: "vgg19",
    // all but Keras' first 5 layers (input, block1 conv1-2, pool, block2 conv1)
    tutorial_frozen: &["features.0", "features.2", "features.5"],
    weights: torchvision("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d"),
    ..RESNET18
};

const INCEPTION_V3: BackboneFacts = BackboneFacts {
    name: "inception_v3",
    minimum_input: 75,
    feature_channels: 2048,
    normalization: MINUS_ONE_TO_ONE,
    weights: torchvision("https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", "0cc3c7bd"),
    ..RESNET18
};

const XCEPTION: BackboneFacts = BackboneFacts {
    name: "xception",
    minimum_input: 71,
    feature_channels: 2048,
    normalization: MINUS_ONE_TO_ONE,
    // all but Keras' first 100 layers: frozen up to and including Keras'
    // `block11_sepconv1_bn` = timm's `block10.rep.2`
    tutorial_frozen: &[
        "conv1",
        "bn1",
        "conv2",
        "bn2",
        "block1",
        "block2",
        "block3",
        "block4",
        "block5",
        "block6",
        "block7",
        "block8",
        "block9",
        "block10.rep.1",
        "block10.rep.2",
    ],
    weights: WeightsSource {
        url: "https://huggingface.co/timm/legacy_xception.tf_in1k/resolve/main/model.safetensors",
        sha256_prefix: None,
    },
    ..RESNET18
};

const MOBILENET_V2: BackboneFacts = BackboneFacts {
    name: "mobilenet_v2",
    feature_channels: 1280,
    weights: torchvision("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "b0353104"),
    ..RESNET18
};

impl Backbone {
    pub const ALL: [Backbone; 7] = [
        Backbone::Resnet18,
        Backbone::Resnet50,
        Backbone::Vgg16,
        Backbone::Vgg19,
        Backbone::InceptionV3,
        Backbone::Xception,
        Backbone::MobilenetV2,
    ];

    /// The catalogue row of this backbone.
    pub fn facts(self) -> &'static BackboneFacts {
        match self {
            Backbone::Resnet18 => &RESNET18,
            Backbone::Resnet50 => &RESNET50,
            Backbone::Vgg16 => &VGG16,
            Backbone::Vgg19 => &VGG19,
            Backbone::InceptionV3 => &INCEPTION_V3,
            Backbone::Xception => &XCEPTION,
            Backbone::MobilenetV2 => &MOBILENET_V2,
        }
    }

    /// The name used in recipes and by `radrun weights`.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// The backbone called `name` in recipes.
    pub fn named(name: &str) -> Option<Backbone> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The layers a `trainable = "tutorial"` phase keeps frozen, as variable prefixes.
    pub fn tutorial_frozen(self) -> Vec<String> {
        self.facts().tutorial_frozen.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_recipe_spelling_and_are_unique() {
        for backbone in Backbone::ALL {
            let written = serde_json::to_value(backbone).unwrap();
            assert_eq!(written, backbone.name(), "serde and the catalogue spell {backbone:?} the same");
            assert_eq!(Backbone::named(backbone.name()), Some(backbone));
        }
    }
}
