//! The `[model]` section of a recipe: which network (`kind`) and its settings, with the
//! tutorial's defaults. Each kind has its own keys; a key of another kind is an error.

use std::fmt;
use std::path::PathBuf;

use radrun_data::{SettingError, Task};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalogue::Backbone;
use crate::unet3d::Unet3dSettings;

/// Activation functions the tutorial's `build_cnn` offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Sigmoid,
    Relu,
    Elu,
    /// Leaky ReLU with negative slope 0.2.
    LeakyRelu,
    /// SELU; the convolutions and dense layer then use LeCun-normal initialisation and
    /// dropout becomes alpha dropout.
    Selu,
    /// GELU (exact, not the tanh approximation).
    Gelu,
}

/// The tutorial's plain CNN (`build_cnn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CnnSettings {
    /// Convolution blocks; each halves the image (two valid convolutions, 2x2 max pool).
    #[schemars(range(min = 1, max = 8))]
    pub blocks: u32,
    /// Feature maps of the first block; each further block doubles them.
    #[schemars(range(min = 1, max = 1024))]
    pub feature_maps: u32,
    /// Convolution kernel size (odd or even, at least 1).
    #[schemars(range(min = 1, max = 15))]
    pub kernel_size: u32,
    pub activation: Activation,
    /// Dropout rate; block 1 uses rate / 2.5. Values above 0.5 are clamped to 0.5 (as
    /// the tutorial did). 0 turns dropout off.
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub dropout: f64,
    /// Batch normalisation after each block's second convolution.
    pub batch_norm: bool,
    /// Units of the fully connected layer before the output.
    #[schemars(range(min = 1, max = 65536))]
    pub dense_units: u32,
}

impl Default for CnnSettings {
    fn default() -> Self {
        Self {
            blocks: 2,
            feature_maps: 32,
            kernel_size: 3,
            activation: Activation::Relu,
            dropout: 0.5,
            batch_norm: false,
            dense_units: 64,
        }
    }
}

/// Input normalisation applied inside the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "NetworkInputNormalize")]
pub enum Normalize {
    /// Subtract the ImageNet mean and divide by its standard deviation per channel
    /// (what ImageNet weights were trained with).
    Imagenet,
    /// Leave intensities in [0, 1].
    None,
}

/// A pretrained backbone with the tutorial's head (`TransferLearning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSettings {
    pub backbone: Backbone,
    pub weights: Weights,
    /// Units of the head's dense layer (the tutorial's 256).
    pub head_units: u32,
    /// Dropout before the output (the tutorial's 0.5).
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub head_dropout: f64,
    pub normalize: Normalize,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            backbone: Backbone::Vgg19,
            weights: Weights::Imagenet,
            head_units: 256,
            head_dropout: 0.5,
            normalize: Normalize::Imagenet,
        }
    }
}

/// Where a transfer model's backbone weights come from; written `"imagenet"`, `"none"`
/// or a file path in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// Random initialisation.
    None,
    /// The backbone's official ImageNet weights from radrun's cache (see `radrun weights`).
    Imagenet,
    /// A `.safetensors` or `.pth` file (a relative path starts at the recipe's folder).
    File(PathBuf),
}

impl Serialize for Weights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Weights::None => s.serialize_str("none"),
            Weights::Imagenet => s.serialize_str("imagenet"),
            Weights::File(path) => path.serialize(s),
        }
    }
}

impl schemars::JsonSchema for Weights {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Weights".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["imagenet", "none"] },
                { "type": "string", "minLength": 1, "description": "a .safetensors or .pth file" }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Weights;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"imagenet\", \"none\" or the path of a .safetensors/.pth file")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Weights, E> {
                match v.trim() {
                    "none" => Ok(Weights::None),
                    "imagenet" => Ok(Weights::Imagenet),
                    "" => Err(E::custom(
                        "expected \"imagenet\", \"none\" or the path of a .safetensors/.pth file, found \"\"",
                    )),
                    path => Ok(Weights::File(PathBuf::from(path))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// How the U-Net decoder doubles the image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Upsampling {
    /// Nearest-neighbour 2x upsampling then a 2x2 convolution (the tutorial's).
    Upsample,
    /// A learnt 2x2 transposed convolution with stride 2.
    Transposed,
}

/// The tutorial's U-Net, plus options it lacked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UnetSettings {
    /// Feature maps of the first level (the tutorial's `initial` = 64); each level
    /// doubles them.
    #[schemars(range(min = 1, max = 512))]
    pub initial_features: u32,
    /// Encoder levels (the tutorial's 4); image sides must be divisible by 2^depth.
    #[schemars(range(min = 1, max = 6))]
    pub depth: u32,
    /// Batch normalisation after every 3x3 convolution (off in the tutorial).
    pub batch_norm: bool,
    /// Dropout after the deepest encoder level and the bottleneck (the tutorial's 0.5).
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub dropout: f64,
    pub upsampling: Upsampling,
}

impl Default for UnetSettings {
    fn default() -> Self {
        Self { initial_features: 64, depth: 4, batch_norm: false, dropout: 0.5, upsampling: Upsampling::Upsample }
    }
}

/// The `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSettings {
    /// The tutorial's `build_cnn`.
    Cnn(CnnSettings),
    /// The tutorial's `TransferLearning`.
    Transfer(TransferSettings),
    /// The tutorial's `U_Net`.
    Unet(UnetSettings),
    /// The tutorial's `build_cnn` in 3D: one class per volume.
    Cnn3d(CnnSettings),
    /// The tutorial's `U_Net` in 3D, pooled by nnU-Net's rule for anisotropic voxels.
    Unet3d(Unet3dSettings),
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings::Cnn(CnnSettings::default())
    }
}

fn invalid(key: &str, message: String) -> SettingError {
    SettingError::new(format!("model.{key}"), message)
}

impl ModelSettings {
    /// The kind's name as written in a recipe.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSettings::Cnn(_) => "cnn",
            ModelSettings::Transfer(_) => "transfer",
            ModelSettings::Unet(_) => "unet",
            ModelSettings::Cnn3d(_) => "cnn3d",
            ModelSettings::Unet3d(_) => "unet3d",
        }
    }

    /// The same kind with every one of its settings at its default.
    pub fn kind_defaults(&self) -> ModelSettings {
        match self {
            ModelSettings::Cnn(_) => ModelSettings::Cnn(CnnSettings::default()),
            ModelSettings::Transfer(_) => ModelSettings::Transfer(TransferSettings::default()),
            ModelSettings::Unet(_) => ModelSettings::Unet(UnetSettings::default()),
            ModelSettings::Cnn3d(_) => ModelSettings::Cnn3d(CnnSettings::default()),
            ModelSettings::Unet3d(_) => ModelSettings::Unet3d(Unet3dSettings::default()),
        }
    }

    /// What the kind is for: the dataset's `data.task` must match.
    pub fn task(&self) -> Task {
        match self {
            ModelSettings::Cnn(_) | ModelSettings::Transfer(_) | ModelSettings::Cnn3d(_) => Task::Classification,
            ModelSettings::Unet(_) | ModelSettings::Unet3d(_) => Task::Segmentation,
        }
    }

    /// `train.batch_size` when the recipe gives none: the tutorial's per network; for
    /// volumes nnU-Net's 2 patches (a 3D U-Net) and 4 volumes (a 3D CNN).
    pub fn default_batch_size(&self) -> u32 {
        match self {
            ModelSettings::Cnn(_) => 10,
            ModelSettings::Transfer(_) => 6,
            ModelSettings::Unet(_) => 8,
            ModelSettings::Cnn3d(_) => 4,
            ModelSettings::Unet3d(_) => 2,
        }
    }

    /// Whether the kind reads volumes (`data.dims = 3`) rather than images.
    pub fn is_volume(&self) -> bool {
        matches!(self, ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_))
    }

    /// The learning rate when the recipe says `"auto"` (or nothing): `Some` rate of the
    /// kind's own (the tutorial's U-Net: 1e-4 whatever the optimizer), or `None` for the
    /// optimizer's Keras default (the tutorial's `None`; for the 3D kinds too, as MONAI's
    /// Adam examples use Adam's 1e-3).
    pub fn default_learning_rate(&self) -> Option<f64> {
        match self {
            ModelSettings::Cnn(_) | ModelSettings::Transfer(_) | ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_) => {
                None
            }
            ModelSettings::Unet(_) => Some(1e-4),
        }
    }

    /// Checks the values, and that an image of `height` x `width` fits the network.
    pub fn validate(&self, height: i64, width: i64) -> Result<(), SettingError> {
        match self {
            ModelSettings::Cnn(s) => s.validate(height, width),
            ModelSettings::Transfer(s) => s.validate(height, width),
            ModelSettings::Unet(s) => s.validate(height, width),
            ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_) => Err(invalid(
                "kind",
                format!(
                    "is \"{}\", a network for volumes: set `data.dims = 3`, or use \"{}\" for 2D images",
                    self.kind(),
                    self.kind().trim_end_matches("3d")
                ),
            )),
        }
    }

    /// Checks the values of a volume kind (the sizes are checked once the data's spacing
    /// and patch are known: [`Unet3dSettings::stages`], [`CnnSettings::validate_volume`]).
    pub fn validate_volume(&self) -> Result<(), SettingError> {
        match self {
            ModelSettings::Unet3d(s) => s.validate(),
            ModelSettings::Cnn3d(s) => s.validate_values(),
            ModelSettings::Cnn(_) | ModelSettings::Transfer(_) | ModelSettings::Unet(_) => Err(invalid(
                "kind",
                format!(
                    "is \"{}\", a network for 2D images, and `data.dims = 3` reads volumes: use \"unet3d\" \
                     to segment or \"cnn3d\" to classify volumes",
                    self.kind()
                ),
            )),
        }
    }
}

impl CnnSettings {
    /// Dropout actually used (the tutorial clamps at 0.5).
    pub fn effective_dropout(&self) -> f64 {
        self.dropout.min(0.5)
    }

    /// Checks the values that do not depend on the image size.
    pub fn validate_values(&self) -> Result<(), SettingError> {
        if !(1..=8).contains(&self.blocks) {
            return Err(invalid("blocks", format!("must be between 1 and 8, found {}", self.blocks)));
        }
        if !(1..=1024).contains(&self.feature_maps) {
            return Err(invalid("feature_maps", format!("must be between 1 and 1024, found {}", self.feature_maps)));
        }
        if !(1..=15).contains(&self.kernel_size) {
            return Err(invalid("kernel_size", format!("must be between 1 and 15, found {}", self.kernel_size)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid("dropout", format!("must be in [0, 1), found {}", self.dropout)));
        }
        if !(1..=65536).contains(&self.dense_units) {
            return Err(invalid("dense_units", format!("must be between 1 and 65536, found {}", self.dense_units)));
        }
        Ok(())
    }

    pub fn validate(&self, height: i64, width: i64) -> Result<(), SettingError> {
        self.validate_values()?;
        self.fits(&[height, width], "data.image_size")
    }

    /// Checks the values and that a volume of `shape` `[z, y, x]` voxels fits.
    pub fn validate_volume(&self, shape: [i64; 3]) -> Result<(), SettingError> {
        self.validate_values()?;
        self.fits(&shape, "data.patch_size")
    }

    /// The side lengths after each block: two valid convolutions then a 2x...x2 max pool
    /// (floor) on every axis. An error names the block where an axis runs out.
    pub fn block_sizes(&self, input: &[i64]) -> Vec<Vec<i64>> {
        let shrink = 2 * (i64::from(self.kernel_size) - 1);
        let mut sides = vec![input.to_vec()];
        for _ in 0..self.blocks {
            let last = &sides[sides.len() - 1];
            sides.push(last.iter().map(|s| (s - shrink).max(0) / 2).collect());
        }
        sides
    }

    /// The shortest side every block fits: each block's two valid convolutions must leave
    /// at least 2 for its pooling.
    pub fn smallest_side(&self) -> i64 {
        let shrink = 2 * (i64::from(self.kernel_size) - 1);
        (1..self.blocks).fold(2 + shrink, |side, _| 2 * side + shrink)
    }

    fn fits(&self, input: &[i64], size_key: &str) -> Result<(), SettingError> {
        let shrink = 2 * (i64::from(self.kernel_size) - 1);
        let sides = self.block_sizes(input);
        for (block, entering) in sides.iter().take(self.blocks as usize).enumerate() {
            let convolved: Vec<i64> = entering.iter().map(|s| (s - shrink).max(0)).collect();
            if convolved.iter().any(|&s| s < 2) {
                let show = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
                let cube = |side: i64| show(&vec![side; input.len()]);
                return Err(invalid(
                    "blocks",
                    format!(
                        "the {} is too small for {} blocks: at block {} the {} input becomes {} after its two {} \
                         valid convolutions, and the {} pooling needs at least {}; use fewer blocks, a smaller \
                         kernel_size or a larger {size_key}",
                        if input.len() == 3 { "volume" } else { "image" },
                        self.blocks,
                        block + 1,
                        show(entering),
                        show(&convolved),
                        cube(i64::from(self.kernel_size)),
                        cube(2),
                        cube(2),
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl TransferSettings {
    pub fn validate(&self, height: i64, width: i64) -> Result<(), SettingError> {
        let min = self.backbone.facts().minimum_input;
        if height < min || width < min {
            return Err(invalid(
                "backbone",
                format!(
                    "{} needs images of at least {min}x{min} pixels, data.image_size is {height}x{width}",
                    self.backbone.name()
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return Err(invalid("head_dropout", format!("must be in [0, 1), found {}", self.head_dropout)));
        }
        if self.head_units == 0 {
            return Err(invalid("head_units", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The knobs the 2D and 3D U-Nets share: `depth` levels, `initial_features` maps and a
/// `dropout` rate, each in its range.
pub(crate) fn check_unet_knobs(depth: u32, initial_features: u32, dropout: f64) -> Result<(), SettingError> {
    if !(1..=6).contains(&depth) {
        return Err(invalid("depth", format!("must be between 1 and 6, found {depth}")));
    }
    if !(1..=512).contains(&initial_features) {
        return Err(invalid("initial_features", format!("must be between 1 and 512, found {initial_features}")));
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(invalid("dropout", format!("must be in [0, 1), found {dropout}")));
    }
    Ok(())
}

impl UnetSettings {
    pub fn validate(&self, height: i64, width: i64) -> Result<(), SettingError> {
        check_unet_knobs(self.depth, self.initial_features, self.dropout)?;
        let factor = 1i64 << self.depth;
        if height % factor != 0 || width % factor != 0 {
            return Err(invalid(
                "depth",
                format!(
                    "a U-Net of depth {} needs image sides divisible by {factor}; data.image_size \
                     is {height}x{width} (try {}x{})",
                    self.depth,
                    (height / factor).max(1) * factor,
                    (width / factor).max(1) * factor
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_side_is_the_one_every_block_just_fits() {
        // kernel 3, 2 blocks: 16 -> 12 -> 6 | 6 -> 2 -> 1; 15 would leave block 2 with 1
        let s = CnnSettings::default();
        assert_eq!(s.smallest_side(), 16);
        assert!(s.validate_volume([16, 16, 16]).is_ok());
        assert_eq!(s.validate_volume([15, 16, 16]).unwrap_err().key, "model.blocks");
        let wide = CnnSettings { blocks: 3, kernel_size: 5, ..Default::default() };
        // two 5x5 convolutions take 8: 64 -> 56 -> 28 | 28 -> 20 -> 10 | 10 -> 2 -> 1
        assert_eq!(wide.smallest_side(), 64);
        assert!(wide.validate(64, 64).is_ok() && wide.validate(63, 64).is_err());
    }
}
