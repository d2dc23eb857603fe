//! The `[data]` keys of volumes (`data.dims = 3`): the layout, the working grid
//! (orientation, spacing, interpolation, cropping), intensities and what to do with
//! imperfect files. Their defaults are nnU-Net's where it has one; the settings check
//! (`DataSettings::validate`) checks their values and refuses the 2D keys in 3D and the
//! reverse.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `data.max_voxels` by default: 2^30 voxels (4 GiB as 32-bit values), above a
/// 1024 x 1024 x 1000 whole-body CT; a header that declares more is refused before its
/// voxels are inflated.
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 30;

/// `data.layout`: how a dataset's folders hold its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetLayout {
    /// `decathlon` when `data.root` holds a `dataset.json`, else `folders`.
    #[default]
    Auto,
    /// The tutorial's split folders: class folders, or image and mask folders.
    Folders,
    /// The Medical Segmentation Decathlon / nnU-Net v2 raw layout: `dataset.json`,
    /// `imagesTr/`, `labelsTr/`, `imagesTs/` (and `labelsTs/` when it exists).
    Decathlon,
}

/// `data.patch_size`: the block of voxels a network sees at once, `[z, y, x]` (kept in
/// that order, the network's). A 3D U-Net trains on patches of it and predicts by sliding
/// it over each volume; a 3D CNN sees each whole volume cropped or padded to it about
/// its centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatchSize {
    /// nnU-Net's idea: the median training shape on the working grid, shrunk (the axis
    /// furthest above its median share first) until a training batch fits
    /// `train.memory_budget`, and made divisible by the U-Net's pooling.
    #[default]
    Auto,
    Voxels([usize; 3]),
}

impl Serialize for PatchSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PatchSize::Auto => s.serialize_str("auto"),
            PatchSize::Voxels(v) => v.serialize(s),
        }
    }
}

impl schemars::JsonSchema for PatchSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PatchSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "const": "auto" },
                {
                    "type": "array",
                    "items": { "type": "integer", "minimum": 1, "maximum": 4096 },
                    "minItems": 3,
                    "maxItems": 3
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for PatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Word(String),
            Voxels(Vec<i64>),
        }
        const EXPECTED: &str = "\"auto\" or [z, y, x] voxels";
        match Written::deserialize(d).map_err(|_| serde::de::Error::custom(format!("expected {EXPECTED}")))? {
            Written::Word(w) if w == "auto" => Ok(PatchSize::Auto),
            Written::Word(w) => {
                Err(serde::de::Error::custom(format!("unknown patch size \"{w}\"; expected {EXPECTED}")))
            }
            Written::Voxels(v) => match *v.as_slice() {
                [z, y, x] if [z, y, x].iter().all(|&n| (1..=4096).contains(&n)) => {
                    Ok(PatchSize::Voxels([z as usize, y as usize, x as usize]))
                }
                [_, _, _] => Err(serde::de::Error::custom("each side must be between 1 and 4096 voxels")),
                _ => Err(serde::de::Error::invalid_length(v.len(), &"[z, y, x] voxels")),
            },
        }
    }
}

/// `data.spacing`: the voxel spacing volumes are resampled to.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TargetSpacing {
    /// The median spacing of each axis over the run's training cases (nnU-Net's rule):
    /// with folds, each fold its own.
    #[default]
    Median,
    /// Kept as stored: no resampling.
    AsStored,
    /// This spacing in mm, written `[z, y, x]` in the recipe (the working grid's third,
    /// second and first axis: superior, anterior, right after RAS) and kept here in the
    /// volume's axis order (x first).
    Mm([f64; 3]),
}

impl Serialize for TargetSpacing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetSpacing::Median => s.serialize_str("median"),
            TargetSpacing::AsStored => s.serialize_str("as_stored"),
            TargetSpacing::Mm([x, y, z]) => [z, y, x].serialize(s),
        }
    }
}

impl schemars::JsonSchema for TargetSpacing {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TargetSpacing".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["median", "as_stored"] },
                { "type": "array", "items": { "type": "number", "exclusiveMinimum": 0 }, "minItems": 3, "maxItems": 3 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for TargetSpacing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Word(String),
            Mm(Vec<f64>),
        }
        const EXPECTED: &str = "\"median\", \"as_stored\" or [z, y, x] in mm";
        match Written::deserialize(d).map_err(|_| serde::de::Error::custom(format!("expected {EXPECTED}")))? {
            Written::Word(w) if w == "median" => Ok(TargetSpacing::Median),
            Written::Word(w) if w == "as_stored" => Ok(TargetSpacing::AsStored),
            Written::Word(w) => Err(serde::de::Error::custom(format!("unknown spacing \"{w}\"; expected {EXPECTED}"))),
            Written::Mm(v) => match v.as_slice() {
                &[z, y, x] => Ok(TargetSpacing::Mm([x, y, z])),
                _ => Err(serde::de::Error::invalid_length(v.len(), &"[z, y, x] in mm")),
            },
        }
    }
}

/// `data.interpolation`: how image voxels are resampled (the order of the B-spline, as
/// `scipy.ndimage.zoom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Order 1.
    Linear,
    /// Order 3 (nnU-Net's for images; the default).
    #[default]
    Cubic,
}

impl Interpolation {
    /// The spline order.
    pub fn order(self) -> u8 {
        match self {
            Interpolation::Linear => 1,
            Interpolation::Cubic => 3,
        }
    }
}

/// `data.mask_interpolation`: how label maps are resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskInterpolation {
    /// The nearest voxel (MONAI's `Spacing(mode="nearest")`).
    Nearest,
    /// Each label's 0/1 map resampled linearly and kept where it reaches 0.5 (nnU-Net's;
    /// the default): smoother borders than nearest when the grid changes a lot.
    #[default]
    Linear,
}

/// `data.normalize`: how volume intensities are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Clip to the 0.5th and 99.5th percentiles of the training cases' foreground
    /// voxels, then subtract their mean and divide by their SD (nnU-Net's CT rule; for
    /// Hounsfield units).
    Ct,
    /// Each volume by its own mean and SD (nnU-Net's default for MR; the default).
    #[default]
    Zscore,
    /// Each volume by the mean and SD of its nonzero voxels, the zeros kept 0 (MR with a
    /// skull-stripped or masked background).
    ZscoreNonzero,
    /// The display windows of `data.window` (one channel each), mapped to 0..1.
    Window,
    /// The values as read.
    None,
}

/// `data.channels_from`: where a case's input channels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelsFrom {
    /// One file (or series) per channel: the Decathlon's `_0000`, `_0001`...; a 4D file
    /// is refused, naming its shape (the default).
    #[default]
    Files,
    /// The fourth axis of a 4D NIfTI file (the original Decathlon's multi-sequence MR).
    LastAxis,
}

/// `data.nan`: what a NaN voxel in a float NIfTI file means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// The file is refused, naming how many (the default: a NaN usually means a broken
    /// export).
    #[default]
    Error,
    /// NaN voxels become 0, and the data summary counts them.
    Zero,
}

/// `data.mask_geometry`: a mask whose grid is not its image's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskGeometry {
    /// An error naming both files and both geometries (the default: usually the wrong
    /// mask).
    #[default]
    Error,
    /// The mask is resampled (nearest) onto its image's grid.
    Resample,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Holder {
        spacing: TargetSpacing,
    }

    #[test]
    fn a_spacing_is_written_z_y_x_and_kept_x_first() {
        let read: Holder = serde_json::from_str(r#"{"spacing": [3.0, 1.5, 0.75]}"#).unwrap();
        assert_eq!(read.spacing, TargetSpacing::Mm([0.75, 1.5, 3.0]));
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"{"spacing":[3.0,1.5,0.75]}"#);
        let read: Holder = serde_json::from_str(r#"{"spacing": "median"}"#).unwrap();
        assert_eq!(read.spacing, TargetSpacing::Median);
        for bad in [r#"{"spacing": [1.0, 2.0]}"#, r#"{"spacing": "mean"}"#] {
            assert!(serde_json::from_str::<Holder>(bad).is_err(), "{bad}");
        }
    }
}
