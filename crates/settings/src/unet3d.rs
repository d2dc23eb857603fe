//! The `kind = "unet3d"` model settings and its stage plan: the tutorial's `U_Net` in 3D,
//! with nnU-Net's rule for anisotropic voxels deciding, level by level, which axes are
//! pooled and which convolutions are 3 voxels wide along each axis.

use std::fmt;

use radrun_data::SettingError;
use serde::{Deserialize, Serialize};

use crate::model::{Upsampling, check_unet_knobs};

/// Normalisation after each 3x3x3 convolution of a 3D U-Net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// None (the tutorial's U-Net).
    None,
    /// Batch normalisation (Keras' momentum and epsilon, as the 2D U-Net).
    Batch,
    /// Instance normalisation with a learnt scale and shift (epsilon 1e-5), nnU-Net's and
    /// MONAI's choice: it does not depend on the batch, which in 3D holds two patches.
    Instance,
}

/// The tutorial's U-Net in 3D.
///
/// Defaults differ from the 2D U-Net where 3D training needs it, as nnU-Net decided:
/// 32 first-level maps (64 in 2D), instance normalisation, no dropout, learnt transposed
/// convolutions to upsample. Each is one key away from the tutorial's choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Unet3dSettings {
    /// Feature maps of the first level; each level doubles them.
    pub initial_features: u32,
    /// Encoder levels, each followed by a pooling (along the axes the spacing allows).
    pub depth: u32,
    pub norm: Norm,
    /// Dropout after the deepest encoder level and the bottleneck.
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub dropout: f64,
    pub upsampling: Upsampling,
    /// nnU-Net's deep supervision: while training, a 1x1x1 convolution to the label maps
    /// on each decoder level below the full resolution, its loss against the labels
    /// taken at that level's resolution added with nnU-Net's weights
    /// ([`deep_supervision_weights`]).
    pub deep_supervision: bool,
}

impl Default for Unet3dSettings {
    fn default() -> Self {
        Self {
            initial_features: 32,
            depth: 4,
            norm: Norm::Instance,
            dropout: 0.0,
            upsampling: Upsampling::Transposed,
            deep_supervision: false,
        }
    }
}

/// nnU-Net's deep supervision weights (`nnUNetTrainer._build_loss`) of a U-Net of
/// `depth` levels, the full resolution first: one output per decoder level weighted
/// 1/2^i, the lowest level's weight then set to 0, all normalised to sum to 1. The
/// lowest level, weighted 0, gets no output here: `depth - 1` weights.
pub fn deep_supervision_weights(depth: u32) -> Vec<f64> {
    let weights: Vec<f64> = (0..depth.saturating_sub(1)).map(|i| 0.5f64.powi(i as i32)).collect();
    let sum: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// An axis is pooled only while it is at least this long (nnU-Net's smallest feature map
/// of 4 voxels, doubled).
const SMALLEST_POOLED: i64 = 8;

/// One level of a 3D U-Net: the kernel of its two convolutions and the pooling after it,
/// per axis `[z, y, x]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stage {
    pub kernel: [i64; 3],
    pub pool: [i64; 3],
    /// The feature map entering the level's convolutions (the patch at level 1).
    pub size: [i64; 3],
    /// Its voxel spacing in mm.
    #[serde(skip)]
    pub spacing: [f64; 3],
}

/// The levels of a 3D U-Net for a patch and a voxel spacing: `depth` encoder levels, then
/// the bottleneck (whose `pool` is all ones).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePlan {
    pub stages: Vec<Stage>,
}

impl StagePlan {
    /// The encoder levels (each followed by its pooling).
    pub fn levels(&self) -> &[Stage] {
        &self.stages[..self.stages.len() - 1]
    }

    pub fn bottleneck(&self) -> &Stage {
        &self.stages[self.stages.len() - 1]
    }

    /// How many times each axis is halved in all.
    pub fn reduction(&self) -> [i64; 3] {
        let mut total = [1; 3];
        for s in self.levels() {
            for (t, p) in total.iter_mut().zip(s.pool) {
                *t *= p;
            }
        }
        total
    }
}

fn axes(v: [i64; 3]) -> String {
    format!("{}x{}x{}", v[0], v[1], v[2])
}

impl fmt::Display for StagePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "      {:<12}{:<15}{:<20}{:<10}pool", "level", "input [z,y,x]", "spacing mm", "kernel")?;
        for (i, s) in self.stages.iter().enumerate() {
            let name = if i + 1 == self.stages.len() { "bottleneck".to_string() } else { format!("encoder{}", i + 1) };
            let spacing = format!("{:.2}x{:.2}x{:.2}", s.spacing[0], s.spacing[1], s.spacing[2]);
            let pool = if i + 1 == self.stages.len() { "-".to_string() } else { axes(s.pool) };
            writeln!(f, "      {name:<12}{:<15}{spacing:<20}{:<10}{pool}", axes(s.size), axes(s.kernel))?;
        }
        Ok(())
    }
}

fn invalid(key: &str, message: String) -> SettingError {
    SettingError::new(format!("model.{key}"), message)
}

impl Unet3dSettings {
    /// Checks the values that do not depend on the data.
    pub fn validate(&self) -> Result<(), SettingError> {
        check_unet_knobs(self.depth, self.initial_features, self.dropout)?;
        if self.deep_supervision && self.depth < 3 {
            return Err(invalid(
                "deep_supervision",
                format!(
                    "needs depth 3 or more, found {}: nnU-Net weighs the lowest decoder level 0, so a U-Net of depth \
                     {} has no level left to supervise; raise model.depth or remove deep_supervision",
                    self.depth, self.depth
                ),
            ));
        }
        Ok(())
    }

    /// The levels for patches of `patch` voxels `[z, y, x]` of `spacing` mm, by nnU-Net's
    /// rule (`get_pool_and_conv_props`):
    /// - an axis is pooled (by 2) only while its spacing is less than twice the finest
    ///   spacing among the axes still long enough to pool (8 voxels or more); an axis left
    ///   alone must be 12 voxels or more;
    /// - a convolution is 3 voxels wide along an axis once that axis' spacing is less
    ///   than twice the finest spacing, 1 voxel before (and stays 3 after);
    /// - the bottleneck follows the same kernel rule.
    ///
    /// So a 5 x 0.8 x 0.8 mm CT is pooled in-plane first, and along z once its in-plane
    /// spacing has coarsened to 3.2 mm. Unlike nnU-Net, the number of levels is the
    /// recipe's `depth`, and each pooled side must divide evenly: an error names the
    /// patch that fits.
    pub fn stages(&self, patch: [i64; 3], spacing: [f64; 3]) -> Result<StagePlan, SettingError> {
        let plan = self.plan_levels(patch, spacing)?;
        let reduction = plan.reduction();
        if (0..3).any(|d| patch[d] % reduction[d] != 0) {
            let fit: Vec<i64> = (0..3).map(|d| (patch[d] + reduction[d] - 1) / reduction[d] * reduction[d]).collect();
            return Err(SettingError::new(
                "data.patch_size",
                format!(
                    "is {}, but a U-Net of depth {} at this spacing halves the axes {} times, so each side \
                     must divide by {}; use {}",
                    axes(patch),
                    self.depth,
                    axes(reduction.map(|r| r.trailing_zeros() as i64)),
                    axes(reduction),
                    axes([fit[0], fit[1], fit[2]])
                ),
            ));
        }
        Ok(plan)
    }

    /// The levels of [`Self::stages`] without its check that the patch divides.
    fn plan_levels(&self, patch: [i64; 3], spacing: [f64; 3]) -> Result<StagePlan, SettingError> {
        self.validate()?;
        let (mut size, mut spacing) = (patch, spacing);
        let mut kernel = [1i64; 3];
        let mut stages = Vec::new();
        for level in 1..=self.depth + 1 {
            let finest = spacing.iter().copied().fold(f64::INFINITY, f64::min);
            for d in 0..3 {
                if spacing[d] / finest < 2.0 {
                    kernel[d] = 3;
                }
            }
            if level > self.depth {
                stages.push(Stage { kernel, pool: [1; 3], size, spacing });
                break;
            }
            let long: Vec<usize> = (0..3).filter(|&d| size[d] >= SMALLEST_POOLED).collect();
            let finest_long = long.iter().map(|&d| spacing[d]).fold(f64::INFINITY, f64::min);
            let mut pooled: Vec<usize> = long.into_iter().filter(|&d| spacing[d] / finest_long < 2.0).collect();
            if pooled.len() == 1 && size[pooled[0]] < 12 {
                pooled.clear();
            }
            if pooled.is_empty() {
                return Err(invalid(
                    "depth",
                    format!(
                        "is {}, but a patch of {} voxels can only be pooled {} times (an axis is halved while it \
                         has 8 voxels or more); use depth = {} or a larger data.patch_size",
                        self.depth,
                        axes(patch),
                        level - 1,
                        (level - 1).max(1)
                    ),
                ));
            }
            let mut pool = [1i64; 3];
            for &d in &pooled {
                pool[d] = 2;
            }
            stages.push(Stage { kernel, pool, size, spacing });
            for &d in &pooled {
                size[d] = (size[d] + 1) / 2;
                spacing[d] *= 2.0;
            }
        }
        Ok(StagePlan { stages })
    }

    /// Bytes a training batch of `batch` patches takes in the network's activations
    /// (float32), estimated as nnU-Net does from the feature maps: at each level its
    /// voxels times its maps times 14 tensors kept for the backward pass (the encoder's
    /// two convolutions, normalisations and ReLUs; the decoder's as many, its upsampled
    /// map and the concatenation), 6 at the bottleneck, and the input.
    pub fn training_bytes(&self, plan: &StagePlan, channels: i64, batch: i64) -> f64 {
        let voxels = |s: &Stage| s.size.iter().product::<i64>() as f64;
        let f = f64::from(self.initial_features);
        let levels: f64 =
            plan.levels().iter().enumerate().map(|(l, s)| voxels(s) * f * 2f64.powi(l as i32) * 14.0).sum();
        let bottleneck = voxels(plan.bottleneck()) * f * 2f64.powi(self.depth as i32) * 6.0;
        let input = voxels(&plan.stages[0]) * channels as f64;
        4.0 * batch as f64 * (levels + bottleneck + input)
    }

    /// `data.patch_size = "auto"`: nnU-Net's idea. Start from the median training shape
    /// `median` `[z, y, x]` on the working grid of `spacing` mm, each side rounded up to
    /// what the pooling divides; while a batch of `batch` patches needs more than
    /// `budget_gib` ([`Self::training_bytes`]), take one pooling step off the axis whose
    /// patch is the largest share of its median side.
    pub fn auto_patch(
        &self,
        median: [i64; 3],
        spacing: [f64; 3],
        channels: i64,
        batch: i64,
        budget_gib: f64,
    ) -> Result<StagePlan, SettingError> {
        let budget = budget_gib * f64::from(1u32 << 30);
        let mut plan = self.rounded_plan(median.map(|s| s.max(1)), spacing)?;
        loop {
            let bytes = self.training_bytes(&plan, channels, batch);
            if bytes <= budget {
                return Ok(plan);
            }
            let (patch, reduction) = (plan.stages[0].size, plan.reduction());
            let share = |d: usize| patch[d] as f64 / median[d].max(1) as f64;
            let mut axes_by_share = [0, 1, 2];
            axes_by_share.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(patch[b].cmp(&patch[a])));
            let voxels = |p: [i64; 3]| p.iter().product::<i64>();
            let smaller = axes_by_share.iter().find_map(|&axis| {
                let mut p = patch;
                p[axis] -= reduction[axis];
                let candidate = self.rounded_plan(p, spacing).ok()?;
                (p[axis] > 0 && voxels(candidate.stages[0].size) < voxels(patch)).then_some(candidate)
            });
            plan = smaller.ok_or_else(|| {
                SettingError::new(
                    "train.memory_budget",
                    format!(
                        "is {budget_gib} GiB, but a patch shrunk as far as a U-Net of depth {} still pools it, {} \
                         voxels, needs {:.2} GiB per batch of {batch}; raise it, or lower model.initial_features, \
                         model.depth or train.batch_size",
                        self.depth,
                        axes(patch),
                        bytes / f64::from(1u32 << 30)
                    ),
                )
            })?;
        }
    }

    /// The plan for `patch` rounded up to what its pooling divides.
    fn rounded_plan(&self, patch: [i64; 3], spacing: [f64; 3]) -> Result<StagePlan, SettingError> {
        let reduction = self.plan_levels(patch, spacing)?.reduction();
        self.stages(std::array::from_fn(|d| (patch[d] + reduction[d] - 1) / reduction[d] * reduction[d]), spacing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(depth: u32, patch: [i64; 3], spacing: [f64; 3]) -> Result<StagePlan, SettingError> {
        Unet3dSettings { depth, ..Default::default() }.stages(patch, spacing)
    }

    #[test]
    fn deep_supervision_weighs_the_levels_as_nnunet_does() {
        // nnU-Net: weights = [1 / 2**i for i in range(depth)], weights[-1] = 0, then
        // normalised; depth 4: [1, 0.5, 0.25, 0] / 1.75, depth 3: [1, 0.5, 0] / 1.5
        let close = |have: Vec<f64>, want: &[f64]| {
            assert_eq!(have.len(), want.len());
            assert!(have.iter().zip(want).all(|(h, w)| (h - w).abs() < 1e-15), "{have:?} vs {want:?}");
        };
        close(deep_supervision_weights(4), &[1.0 / 1.75, 0.5 / 1.75, 0.25 / 1.75]);
        close(deep_supervision_weights(3), &[2.0 / 3.0, 1.0 / 3.0]);
        let shallow = Unet3dSettings { depth: 2, deep_supervision: true, ..Default::default() };
        let e = shallow.validate().unwrap_err();
        assert_eq!(e.key, "model.deep_supervision");
        assert!(e.to_string().contains("needs depth 3 or more, found 2"), "{e}");
    }

    #[test]
    fn an_anisotropic_ct_is_pooled_in_plane_first_as_nnunet_plans_it() {
        // nnU-Net's get_pool_and_conv_props for spacing [5, 0.8, 0.8] and patch
        // [40, 192, 192] gives pools (1,2,2) (1,2,2) (2,2,2) (2,2,2) (2,2,2) and kernels
        // (1,3,3) (1,3,3) (3,3,3) (3,3,3) (3,3,3), bottleneck (3,3,3)
        let p = plan(5, [40, 192, 192], [5.0, 0.8, 0.8]).unwrap();
        let pools: Vec<[i64; 3]> = p.levels().iter().map(|s| s.pool).collect();
        let kernels: Vec<[i64; 3]> = p.stages.iter().map(|s| s.kernel).collect();
        assert_eq!(pools, [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]);
        assert_eq!(kernels, [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]);
        assert_eq!(p.reduction(), [8, 32, 32]);
        assert_eq!(p.bottleneck().size, [5, 6, 6]);
    }

    #[test]
    fn isotropic_voxels_pool_every_axis_at_every_level() {
        let p = plan(3, [32, 32, 32], [1.0, 1.0, 1.0]).unwrap();
        assert!(p.levels().iter().all(|s| s.pool == [2, 2, 2] && s.kernel == [3, 3, 3]));
        assert_eq!(p.bottleneck().size, [4, 4, 4]);
    }

    #[test]
    fn a_thin_axis_stops_pooling_and_a_patch_that_does_not_divide_is_refused_with_the_fix() {
        // z has 8 voxels: pooled once (to 4), then left alone
        let p = plan(3, [8, 32, 32], [1.0, 1.0, 1.0]).unwrap();
        let pools: Vec<[i64; 3]> = p.levels().iter().map(|s| s.pool).collect();
        assert_eq!(pools, [[2, 2, 2], [1, 2, 2], [1, 2, 2]]);
        let e = plan(2, [20, 30, 32], [1.0, 1.0, 1.0]).unwrap_err();
        assert_eq!(e.key, "data.patch_size");
        assert!(e.to_string().contains("use 20x32x32"), "{e}");
        let e = plan(4, [8, 8, 8], [1.0, 1.0, 1.0]).unwrap_err();
        assert_eq!(e.key, "model.depth");
        assert!(e.to_string().contains("use depth = 1"), "{e}");
    }

    #[test]
    fn the_activation_estimate_adds_each_levels_maps_by_hand() {
        // depth 1, 4 maps, patch 8x8x8 isotropic: level 512 voxels x 4 maps x 14, bottleneck
        // 64 voxels x 8 maps x 6, input 512 x 2 channels; float32, 3 patches
        let s = Unet3dSettings { depth: 1, initial_features: 4, ..Default::default() };
        let p = s.stages([8, 8, 8], [1.0, 1.0, 1.0]).unwrap();
        let want = 4.0 * 3.0 * (512.0 * 4.0 * 14.0 + 64.0 * 8.0 * 6.0 + 512.0 * 2.0);
        assert_eq!(s.training_bytes(&p, 2, 3), want);
    }

    #[test]
    fn an_auto_patch_is_the_median_shape_made_divisible_or_shrunk_into_the_budget() {
        let s = Unet3dSettings { depth: 3, initial_features: 8, ..Default::default() };
        let spacing = [3.0, 1.5, 1.5];
        // ample memory: the median rounded up to the pooling (z pooled twice: 4; y, x: 8)
        let p = s.auto_patch([46, 61, 64], spacing, 1, 2, 64.0).unwrap();
        assert_eq!(p.stages[0].size, [48, 64, 64]);
        // a tight budget: smaller, still divisible, within it
        let budget = 0.05;
        let p = s.auto_patch([46, 61, 64], spacing, 1, 2, budget).unwrap();
        let [z, y, x] = p.stages[0].size;
        let r = p.reduction();
        assert!(z % r[0] == 0 && y % r[1] == 0 && x % r[2] == 0, "{:?} by {r:?}", p.stages[0].size);
        assert!(s.training_bytes(&p, 1, 2) <= budget * f64::from(1u32 << 30));
        assert!(z * y * x < 48 * 64 * 64);
        let e = s.auto_patch([46, 61, 64], spacing, 1, 2, 1e-6).unwrap_err();
        assert_eq!(e.key, "train.memory_budget");
    }
}
