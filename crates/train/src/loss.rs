//! Loss functions on logits: softmax cross-entropy with class weights and label
//! smoothing (Keras semantics: weighted per-sample losses averaged over the batch size),
//! and the segmentation losses (binary cross-entropy, soft Dice, both, multi-class
//! cross-entropy).

use tch::{Kind, Reduction, Tensor};

use radrun_settings::LossName;

/// Classification loss. `logits` [n, k], `targets` [n] (int64), `class_weights` [k].
/// With weights, each sample's loss is multiplied by its class weight and the sum is
/// divided by n (Keras' `class_weight`), not by the sum of weights (PyTorch's). Label
/// smoothing s spreads s/k on every class (Keras' and PyTorch's rule). libtorch's fused
/// `cross_entropy_loss` computes the per-sample losses in one kernel each way.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, class_weights: Option<&Tensor>, smoothing: f64) -> Tensor {
    let mut per_sample = logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::None, -100, smoothing);
    if let Some(w) = class_weights {
        per_sample *= w.index_select(0, targets);
    }
    per_sample.mean(Kind::Float)
}

/// The loss a segmentation run uses, with "auto" resolved from the number of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationLoss {
    BinaryCrossEntropy,
    Dice,
    BceDice,
    CrossEntropy,
    /// Cross-entropy (binary on one sigmoid map) plus soft Dice: nnU-Net's loss.
    DiceCrossEntropy,
}

impl SegmentationLoss {
    /// Resolves the recipe's loss for `labels` labels (background included); for
    /// `volumes` "auto" is nnU-Net's Dice plus cross-entropy.
    pub fn resolve(name: LossName, labels: usize, volumes: bool) -> Result<Self, String> {
        let binary = labels <= 2;
        match (name, binary) {
            (LossName::Auto, _) if volumes => Ok(Self::DiceCrossEntropy),
            (LossName::DiceCe, _) => Ok(Self::DiceCrossEntropy),
            // one structure has one sigmoid map: its cross-entropy is the binary one
            (LossName::Auto | LossName::BinaryCrossEntropy | LossName::CrossEntropy, true) => {
                Ok(Self::BinaryCrossEntropy)
            }
            (LossName::Auto, false) | (LossName::CrossEntropy, _) => Ok(Self::CrossEntropy),
            (LossName::Dice, _) => Ok(Self::Dice),
            (LossName::BceDice, true) => Ok(Self::BceDice),
            (LossName::BinaryCrossEntropy | LossName::BceDice, false) => Err(format!(
                "binary cross-entropy needs binary masks, but the masks hold {labels} labels; use \
                 \"cross_entropy\" or \"dice\""
            )),
        }
    }

    /// `logits` [n, maps, h, w] (1 map for binary masks), `masks` [n, h, w] int64 labels;
    /// or the same with [z, y, x] for [h, w].
    pub fn compute(self, logits: &Tensor, masks: &Tensor) -> Tensor {
        match self {
            Self::BinaryCrossEntropy => bce(logits, masks),
            Self::Dice => soft_dice_loss(logits, masks),
            Self::BceDice => bce(logits, masks) + soft_dice_loss(logits, masks),
            Self::CrossEntropy => logits.cross_entropy_loss::<Tensor>(masks, None, Reduction::Mean, -100, 0.0),
            Self::DiceCrossEntropy => {
                let ce = if logits.size()[1] == 1 {
                    bce(logits, masks)
                } else {
                    logits.cross_entropy_loss::<Tensor>(masks, None, Reduction::Mean, -100, 0.0)
                };
                ce + soft_dice_loss(logits, masks)
            }
        }
    }
}

fn bce(logits: &Tensor, masks: &Tensor) -> Tensor {
    let target = masks.unsqueeze(1).gt(0).to_kind(Kind::Float);
    logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::Mean)
}

/// Per-class probabilities and one-hot targets, foreground labels only: [n, labels-1,
/// h, w] (or [n, labels-1, z, y, x]).
fn foreground_probabilities(logits: &Tensor, masks: &Tensor) -> (Tensor, Tensor) {
    let maps = logits.size()[1];
    if maps == 1 {
        (logits.sigmoid(), masks.unsqueeze(1).gt(0).to_kind(Kind::Float))
    } else {
        let p = logits.softmax(1, Kind::Float).narrow(1, 1, maps - 1);
        // one_hot puts the label axis last: move it after the sample axis
        let last = masks.dim() as i64;
        let order: Vec<i64> = std::iter::once(0).chain(std::iter::once(last)).chain(1..last).collect();
        let t = masks.one_hot(maps).permute(order.as_slice()).narrow(1, 1, maps - 1).to_kind(Kind::Float);
        (p, t)
    }
}

/// 1 - soft Dice, Dice = (2 sum(p t) + 1) / (sum(p) + sum(t) + 1) per image and foreground
/// label, averaged. The +1 keeps empty masks finite.
pub fn soft_dice_loss(logits: &Tensor, masks: &Tensor) -> Tensor {
    let (p, t) = foreground_probabilities(logits, masks);
    let spatial: Vec<i64> = (2..p.dim() as i64).collect();
    let dims = spatial.as_slice();
    let intersection = (&p * &t).sum_dim_intlist(dims, false, Kind::Float);
    let total = p.sum_dim_intlist(dims, false, Kind::Float) + t.sum_dim_intlist(dims, false, Kind::Float);
    let dice = (intersection * 2.0 + 1.0) / (total + 1.0);
    1.0 - dice.mean(Kind::Float)
}

/// Predicted labels [n, h, w] from logits: above 0.5 on one sigmoid map (the sigmoid,
/// not the logit: the rule `radrun predict` applies to probabilities), else argmax.
pub fn predicted_labels(logits: &Tensor) -> Tensor {
    if logits.size()[1] == 1 {
        logits.squeeze_dim(1).sigmoid().gt(0.5).to_kind(Kind::Int64)
    } else {
        logits.argmax(1, false)
    }
}

#[cfg(test)]
mod tests {
    use radrun_data::testing::network_rounding;

    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    /// The composed loss radrun used before the fused one, kept as its reference.
    fn composed_cross_entropy(
        logits: &Tensor,
        targets: &Tensor,
        class_weights: Option<&Tensor>,
        smoothing: f64,
    ) -> Tensor {
        let classes = logits.size()[1];
        let log_p = logits.log_softmax(1, Kind::Float);
        let mut target = targets.one_hot(classes).to_kind(Kind::Float);
        if smoothing > 0.0 {
            target = target * (1.0 - smoothing) + smoothing / classes as f64;
        }
        let mut per_sample = -(target * log_p).sum_dim_intlist(1, false, Kind::Float);
        if let Some(w) = class_weights {
            per_sample *= w.index_select(0, targets);
        }
        per_sample.mean(Kind::Float)
    }

    #[test]
    fn the_fused_cross_entropy_equals_the_composed_one_with_its_gradient() {
        tch::manual_seed(4);
        let logits = (Tensor::randn([32, 6], (Kind::Float, tch::Device::Cpu)) * 4.0).set_requires_grad(true);
        let targets = Tensor::randint(6, [32], (Kind::Int64, tch::Device::Cpu));
        let weights = Tensor::from_slice(&[0.5f32, 1.0, 2.0, 3.0, 0.25, 1.5]);
        for w in [None, Some(&weights)] {
            for smoothing in [0.0, 0.1] {
                let fused = cross_entropy(&logits, &targets, w, smoothing);
                let composed = composed_cross_entropy(&logits, &targets, w, smoothing);
                let (a, b) = (fused.double_value(&[]), composed.double_value(&[]));
                // the same sums of terms of one sign in other orders, in float32: three
                // stages (log-softmax over 6 classes, the sum over them, the mean of 32
                // samples), the widest of 32 terms: 2e-6 of the loss
                assert!(
                    (a - b).abs() <= network_rounding(3, 32) * b.abs().max(1.0),
                    "weights {} smoothing {smoothing}: {a} vs {b}",
                    w.is_some()
                );
                let ga = Tensor::run_backward(&[fused], &[&logits], false, false).remove(0);
                let gb = Tensor::run_backward(&[composed], &[&logits], false, false).remove(0);
                // w (p - t) / 32 with w <= 3: a softmax rounded to a few float32 steps of one
                // (9 x 6e-8) over 32 is 5e-8 at most, under atol 1e-7; rtol 1e-5 takes the
                // rest, far below a wrong weight or smoothing (1e-2 of a gradient)
                assert!(ga.allclose(&gb, 1e-5, 1e-7, false), "gradient, weights {} smoothing {smoothing}", w.is_some());
            }
        }
    }

    #[test]
    fn cross_entropy_matches_hand_values() {
        // logits (0, ln 3): p = (1/4, 3/4)
        let logits = t(&[0.0, 3f32.ln(), 0.0, 3f32.ln()], &[2, 2]);
        let targets = Tensor::from_slice(&[1i64, 0]);
        let plain = cross_entropy(&logits, &targets, None, 0.0).double_value(&[]);
        let want = (-(0.75f64).ln() - (0.25f64).ln()) / 2.0;
        // float32 against float64: ln 3 held in float32 and a few float32 roundings of
        // values below 3 (half a float32 step: 6e-8 below 2, 1.2e-7 below 4) keep
        // these losses within 1e-6 of the exact values
        assert!((plain - want).abs() < 1e-6, "{plain} vs {want}");
        // Keras class weights: sum(w_i l_i) / n
        let w = Tensor::from_slice(&[2.0f32, 0.5]);
        let weighted = cross_entropy(&logits, &targets, Some(&w), 0.0).double_value(&[]);
        let want_w = (0.5 * -(0.75f64).ln() + 2.0 * -(0.25f64).ln()) / 2.0;
        assert!((weighted - want_w).abs() < 1e-6);
        // label smoothing 0.2 with 2 classes: targets (0.1, 0.9)
        let smooth = cross_entropy(&logits, &targets, None, 0.2).double_value(&[]);
        let l1 = -(0.1 * (0.25f64).ln() + 0.9 * (0.75f64).ln());
        let l2 = -(0.9 * (0.25f64).ln() + 0.1 * (0.75f64).ln());
        assert!((smooth - (l1 + l2) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn dice_loss_is_zero_for_a_perfect_confident_prediction() {
        let masks = Tensor::from_slice(&[0i64, 1, 1, 0]).view([1, 2, 2]);
        let logits = (masks.to_kind(Kind::Float) * 40.0 - 20.0).view([1, 1, 2, 2]);
        // sigmoid(+-20) is 2e-9 from 1 or 0, and a few float32 roundings of sums up to 5
        // add under 1e-6: within 1e-6 of 0 here, 1e-5 of 0.8 below
        assert!(soft_dice_loss(&logits, &masks).double_value(&[]) < 1e-6);
        // all wrong: dice = 1 / (2 + 2 + 1)
        let wrong = -&logits;
        let loss = soft_dice_loss(&wrong, &masks).double_value(&[]);
        assert!((loss - (1.0 - 1.0 / 5.0)).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn auto_loss_follows_the_label_count() {
        assert_eq!(SegmentationLoss::resolve(LossName::Auto, 2, false), Ok(SegmentationLoss::BinaryCrossEntropy));
        assert_eq!(SegmentationLoss::resolve(LossName::Auto, 4, false), Ok(SegmentationLoss::CrossEntropy));
        assert!(SegmentationLoss::resolve(LossName::BceDice, 3, false).is_err());
        // one structure's single map: a softmax cross-entropy over one map cannot take the
        // label 1 (libtorch stops on it), the binary cross-entropy is the same loss
        for volumes in [false, true] {
            let resolved = SegmentationLoss::resolve(LossName::CrossEntropy, 2, volumes);
            assert_eq!(resolved, Ok(SegmentationLoss::BinaryCrossEntropy));
        }
        assert_eq!(SegmentationLoss::resolve(LossName::CrossEntropy, 3, true), Ok(SegmentationLoss::CrossEntropy));
    }

    #[test]
    fn the_segmentation_losses_of_volumes_sum_over_every_voxel() {
        // a volume [n, k, z, y, x] scores as the image [n, k, z * y, x]: the losses sum over
        // all spatial axes; float32 sums in another grouping, of 2 x 3 x 4 x 5 terms
        tch::manual_seed(7);
        let logits = Tensor::randn([2, 3, 3, 4, 5], (Kind::Float, tch::Device::Cpu)) * 3.0;
        let masks = Tensor::randint(3, [2, 3, 4, 5], (Kind::Int64, tch::Device::Cpu));
        let flat = (logits.view([2, 3, 12, 5]), masks.view([2, 12, 5]));
        for loss in [SegmentationLoss::Dice, SegmentationLoss::CrossEntropy, SegmentationLoss::DiceCrossEntropy] {
            let (a, b) =
                (loss.compute(&logits, &masks).double_value(&[]), loss.compute(&flat.0, &flat.1).double_value(&[]));
            assert!((a - b).abs() <= network_rounding(3, 120) * a.abs().max(1.0), "{loss:?}: {a} vs {b}");
        }
        let dice_ce = SegmentationLoss::DiceCrossEntropy.compute(&logits, &masks).double_value(&[]);
        let parts = SegmentationLoss::CrossEntropy.compute(&logits, &masks).double_value(&[])
            + SegmentationLoss::Dice.compute(&logits, &masks).double_value(&[]);
        assert!((dice_ce - parts).abs() < 1e-6, "{dice_ce} vs {parts}");
        assert_eq!(SegmentationLoss::resolve(LossName::Auto, 3, true), Ok(SegmentationLoss::DiceCrossEntropy));
    }
}
