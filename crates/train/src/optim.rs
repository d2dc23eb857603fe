//! Optimizers with the update rules of Keras (TensorFlow 2.1, the tutorial's version),
//! which differ from PyTorch's in where epsilon goes and in their defaults:
//!
//! | optimizer | rule (g gradient, t step from 1) | defaults |
//! |---|---|---|
//! | adam | m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; w -= lr √(1-b2ᵗ)/(1-b1ᵗ) · m / (√v + ε) | b1 0.9, b2 0.999, ε 1e-7 |
//! | adamax | m = b1 m + (1-b1) g; u = max(b2 u, abs(g)); w -= lr/(1-b1ᵗ) · m / (u + ε) | b1 0.9, b2 0.999, ε 1e-7 |
//! | nadam | Keras' Nadam with the momentum schedule μₜ = b1 (1 - ½·0.96^(0.004 t)) | b1 0.9, b2 0.999, ε 1e-7 |
//! | rmsprop | s = ρ s + (1-ρ) g²; w -= lr · g / (√s + ε); with momentum μ: v = μ v + lr · g / √(s + ε); w -= v | ρ 0.9, ε 1e-7 |
//! | sgd | v = μ v - lr g; w += v (Nesterov: w += μ v - lr g) | μ 0 |
//!
//! Epsilon is added after the square root and, for Adam, after the bias correction has
//! been folded into the learning rate (Keras' "epsilon hat"); PyTorch adds 1e-8 to the
//! bias-corrected root. The difference matters only when gradients are tiny.
//!
//! Two rules are TF 2.1's where Keras 3 changed them. RMSprop without momentum (the
//! tutorial's) adds epsilon after the root; with momentum TF 2.1 ran a fused kernel that
//! adds it inside, and Keras 3 adds it inside in both cases. Nadam's schedule decays as
//! 0.96^(0.004 t), Dozat's and TF 2.1's; Keras 3 uses 0.96^t, which reaches b1 within a
//! hundred steps. Every other rule equals Keras 3's (tests/keras_optimizers.rs runs both).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::settings::OptimizerName;

const EPSILON: f64 = 1e-7;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;

/// Hyper-parameters of an optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub name: OptimizerName,
    pub learning_rate: f64,
    /// SGD and RMSprop momentum.
    pub momentum: f64,
    pub nesterov: bool,
    /// RMSprop decay.
    pub rho: f64,
    /// Decoupled weight decay: w *= 1 - lr x weight_decay before each update (0: none).
    pub weight_decay: f64,
}

/// An optimizer's scalar state: what, with its moment tensors, a checkpoint keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// Nadam's running product of the momentum schedule (1 for the others).
    pub schedule: f64,
}

/// One parameter and its optimizer state.
struct Slot {
    param: Tensor,
    first: Option<Tensor>,
    second: Option<Tensor>,
}

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    config: OptimizerConfig,
    slots: Vec<Slot>,
    step: u64,
    /// Nadam's running product of the momentum schedule.
    schedule: f64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<Tensor>) -> Self {
        let slots = params.into_iter().map(|param| Slot { param, first: None, second: None }).collect();
        Self { config, slots, step: 0, schedule: 1.0 }
    }

    pub fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    /// Sets the rate of the next updates (a schedule's).
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    /// The scalar state and, per parameter index, its moment tensors that exist
    /// (`"first"`, `"second"`), copied to the CPU.
    pub fn export(&self) -> (OptimizerState, Vec<(usize, &'static str, Tensor)>) {
        let mut tensors = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            for (name, moment) in [("first", &slot.first), ("second", &slot.second)] {
                if let Some(t) = moment {
                    tensors.push((i, name, t.to_device(tch::Device::Cpu)));
                }
            }
        }
        (OptimizerState { step: self.step, schedule: self.schedule }, tensors)
    }

    /// Restores what [`Optimizer::export`] gave, on the parameters' device; `moment`
    /// returns a parameter index's tensor of that name, if it was saved.
    pub fn import(&mut self, state: OptimizerState, moment: impl Fn(usize, &str) -> Option<Tensor>) {
        self.step = state.step;
        self.schedule = state.schedule;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let device = slot.param.device();
            slot.first = moment(i, "first").map(|t| t.to_device(device));
            slot.second = moment(i, "second").map(|t| t.to_device(device));
        }
    }

    /// Scales all gradients together so that their joint L2 norm is at most `max_norm`
    /// (PyTorch's `clip_grad_norm_`, without reading the norm back to the host).
    pub fn clip_gradients(&mut self, max_norm: f64) {
        let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(Tensor::defined).collect();
        let Some(kind) = grads.first().map(Tensor::kind) else { return };
        tch::no_grad(|| {
            let squares = grads.iter().map(|g| g.square().sum(tch::Kind::Float)).collect::<Vec<_>>();
            let norm = Tensor::stack(&squares, 0).sum(tch::Kind::Float).sqrt();
            let scale = (norm + 1e-6).reciprocal().g_mul_scalar(max_norm).clamp_max(1.0).to_kind(kind);
            for mut g in grads {
                let _ = g.g_mul_(&scale);
            }
        });
    }

    /// Clears the gradients of the parameters.
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// Applies one update from the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as f64;
        let c = self.config;
        let lr = c.learning_rate;
        // Nadam's momentum schedule, as Keras computes it
        let (mu_t, mu_next) =
            (BETA1 * (1.0 - 0.5 * 0.96f64.powf(t * 0.004)), BETA1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * 0.004)));
        if c.name == OptimizerName::Nadam {
            self.schedule *= mu_t;
        }
        let schedule = self.schedule;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let g = slot.param.grad();
                if !g.defined() {
                    continue;
                }
                if c.weight_decay > 0.0 {
                    let _ = slot.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let first = slot.first.get_or_insert_with(|| g.zeros_like());
                match c.name {
                    OptimizerName::Adam => {
                        let v = slot.second.get_or_insert_with(|| g.zeros_like());
                        let _ = first.lerp_(&g, 1.0 - BETA1);
                        let _ = v.lerp_(&g.square(), 1.0 - BETA2);
                        let lr_t = lr * (1.0 - BETA2.powf(t)).sqrt() / (1.0 - BETA1.powf(t));
                        let _ = slot.param.addcdiv_(&(&*first * -lr_t), &(v.sqrt() + EPSILON));
                    }
                    OptimizerName::Adamax => {
                        let u = slot.second.get_or_insert_with(|| g.zeros_like());
                        let _ = first.lerp_(&g, 1.0 - BETA1);
                        let decayed = &*u * BETA2;
                        u.copy_(&decayed.maximum(&g.abs()));
                        let lr_t = lr / (1.0 - BETA1.powf(t));
                        let _ = slot.param.addcdiv_(&(&*first * -lr_t), &(&*u + EPSILON));
                    }
                    OptimizerName::Nadam => {
                        let v = slot.second.get_or_insert_with(|| g.zeros_like());
                        let _ = first.lerp_(&g, 1.0 - BETA1);
                        let _ = v.lerp_(&g.square(), 1.0 - BETA2);
                        let g_prime = &g / (1.0 - schedule);
                        let m_prime = &*first / (1.0 - schedule * mu_next);
                        let v_prime = &*v / (1.0 - BETA2.powf(t));
                        let m_bar = g_prime * (1.0 - mu_t) + m_prime * mu_next;
                        let _ = slot.param.addcdiv_(&(m_bar * -lr), &(v_prime.sqrt() + EPSILON));
                    }
                    OptimizerName::Rmsprop => {
                        let _ = first.lerp_(&g.square(), 1.0 - c.rho);
                        if c.momentum > 0.0 {
                            // TF 2.1 ran its fused kernel here, epsilon inside the root
                            let step = &g * lr / (&*first + EPSILON).sqrt();
                            let velocity = slot.second.get_or_insert_with(|| g.zeros_like());
                            let _ = velocity.g_mul_scalar_(c.momentum).g_add_(&step);
                            let _ = slot.param.g_sub_(velocity);
                        } else {
                            let _ = slot.param.g_sub_(&(&g * lr / (first.sqrt() + EPSILON)));
                        }
                    }
                    OptimizerName::Sgd => {
                        if c.momentum > 0.0 {
                            // Keras: v = momentum v - lr g; w += v (or momentum v - lr g for Nesterov)
                            let _ = first.g_mul_scalar_(c.momentum).g_sub_(&(&g * lr));
                            if c.nesterov {
                                let _ = slot.param.g_add_(&(&*first * c.momentum - &g * lr));
                            } else {
                                let _ = slot.param.g_add_(first);
                            }
                        } else {
                            let _ = slot.param.g_sub_(&(&g * lr));
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Runs `steps` updates minimising 0.5 * w² from w = 1 (gradient = w) and returns w.
    fn run(name: OptimizerName, lr: f64, momentum: f64, nesterov: bool, steps: usize) -> Vec<f64> {
        let w = Tensor::from_slice(&[1.0f64]).to_kind(Kind::Double).set_requires_grad(true);
        let config = OptimizerConfig { name, learning_rate: lr, momentum, nesterov, rho: 0.9, weight_decay: 0.0 };
        let mut opt = Optimizer::new(config, vec![w.shallow_clone()]);
        let mut trace = Vec::new();
        for _ in 0..steps {
            opt.zero_grad();
            let loss = (&w * &w * 0.5).sum(Kind::Double);
            loss.backward();
            opt.step();
            trace.push(w.double_value(&[0]));
        }
        trace
    }

    fn close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "got {got:?}, want {want:?}");
        }
    }

    // Reference values computed by hand from the Keras formulas in the module docs.
    #[test]
    fn adam_first_steps() {
        // step 1: m = 0.1, v = 0.001, lr_t = 0.1 * sqrt(0.001) / 0.1; w = 1 - lr_t * 0.1 / (sqrt(0.001) + 1e-7)
        let lr_t = 0.1 * (0.001f64).sqrt() / 0.1;
        let w1 = 1.0 - lr_t * 0.1 / ((0.001f64).sqrt() + 1e-7);
        close(&run(OptimizerName::Adam, 0.1, 0.0, false, 1), &[w1]);
    }

    #[test]
    fn sgd_plain_momentum_and_nesterov() {
        close(&run(OptimizerName::Sgd, 0.1, 0.0, false, 2), &[0.9, 0.81]);
        // v1 = -0.1, w1 = 0.9; v2 = 0.5*-0.1 - 0.09 = -0.14, w2 = 0.76
        close(&run(OptimizerName::Sgd, 0.1, 0.5, false, 2), &[0.9, 0.76]);
        // nesterov: v1 = -0.1, w1 = 1 + 0.5*-0.1 - 0.1 = 0.85
        close(&run(OptimizerName::Sgd, 0.1, 0.5, true, 1), &[0.85]);
    }

    #[test]
    fn rmsprop_first_step() {
        // s = 0.1 * 1 = 0.1; w = 1 - 0.01 * 1 / (sqrt(0.1) + 1e-7)
        close(&run(OptimizerName::Rmsprop, 0.01, 0.0, false, 1), &[1.0 - 0.01 / (0.1f64.sqrt() + 1e-7)]);
    }

    #[test]
    fn adamax_first_step() {
        // m = 0.1, u = max(0, 1) = 1; w = 1 - 0.1/0.1 * 0.1 / (1 + 1e-7)
        close(&run(OptimizerName::Adamax, 0.1, 0.0, false, 1), &[1.0 - 0.1 / (1.0 + 1e-7)]);
    }

    #[test]
    fn nadam_first_step() {
        let mu1 = 0.9 * (1.0 - 0.5 * 0.96f64.powf(0.004));
        let mu2 = 0.9 * (1.0 - 0.5 * 0.96f64.powf(0.008));
        let g_prime = 1.0 / (1.0 - mu1);
        let m_prime = 0.1 / (1.0 - mu1 * mu2);
        let v_prime: f64 = 0.001 / (1.0 - 0.999);
        let m_bar = (1.0 - mu1) * g_prime + mu2 * m_prime;
        close(&run(OptimizerName::Nadam, 0.1, 0.0, false, 1), &[1.0 - 0.1 * m_bar / (v_prime.sqrt() + 1e-7)]);
    }

    #[test]
    fn weight_decay_is_decoupled() {
        // SGD at lr 0.1 with decay 0.5 on 0.5 w^2 from 1: w = 1 * (1 - 0.05) - 0.1 * 1
        let w = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let config = OptimizerConfig {
            name: OptimizerName::Sgd,
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            weight_decay: 0.5,
        };
        let mut opt = Optimizer::new(config, vec![w.shallow_clone()]);
        (&w * &w * 0.5).sum(Kind::Double).backward();
        opt.step();
        close(&[w.double_value(&[0])], &[0.85]);
    }

    #[test]
    fn clipping_scales_all_gradients_together() {
        let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
        let config = OptimizerConfig {
            name: OptimizerName::Sgd,
            learning_rate: 1.0,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::new(config, vec![a.shallow_clone(), b.shallow_clone()]);
        // gradients 3 and 4: norm 5, clipped to 1 -> 0.6 and 0.8
        (&a * &a * 0.5 + &b * &b * 0.5).sum(Kind::Float).backward();
        opt.clip_gradients(1.0);
        assert!((a.grad().double_value(&[0]) - 0.6).abs() < 1e-6 && (b.grad().double_value(&[0]) - 0.8).abs() < 1e-6);
        // under the limit nothing changes
        opt.clip_gradients(10.0);
        assert!((a.grad().double_value(&[0]) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn every_optimizer_decreases_a_quadratic() {
        for name in [
            OptimizerName::Adam,
            OptimizerName::Adamax,
            OptimizerName::Nadam,
            OptimizerName::Rmsprop,
            OptimizerName::Sgd,
        ] {
            let trace = run(name, 0.05, 0.0, false, 30);
            assert!(trace[29].abs() < 0.7, "{name:?}: {trace:?}");
        }
    }
}
