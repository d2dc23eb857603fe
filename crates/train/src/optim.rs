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
use tch::{Kind, Tensor};

use crate::precision::GradScaler;
use radrun_settings::OptimizerName;

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

/// The numbers one update uses besides the tensors.
struct StepScalars {
    /// The step, counted from 1.
    t: f64,
    /// Nadam's schedule: this step's and the next step's momentum, and their running product.
    mu_t: f64,
    mu_next: f64,
    schedule: f64,
}

/// An optimizer over a fixed list of parameters.
///
/// The parameters are moved into one contiguous buffer (each parameter becomes a view of
/// its part) and so are the moments, so that one update is a handful of kernels over the
/// whole buffer whatever the number of tensors: about 1,100 kernel launches per ResNet50
/// step become about ten. The per-parameter path (the same rule on each parameter's view)
/// remains for the steps where some parameter got no gradient, which Keras leaves
/// untouched, and as the reference the whole-buffer path is tested against.
pub struct Optimizer {
    config: OptimizerConfig,
    /// The parameters, each a view of its span of `buffer`.
    params: Vec<Tensor>,
    /// Where and how each parameter lies in the buffers.
    spans: Vec<Span>,
    buffer: Tensor,
    /// Moments, laid out as `buffer`; created at the first update.
    first: Option<Tensor>,
    second: Option<Tensor>,
    /// False: update parameter by parameter even when every one has a gradient.
    whole_buffer: bool,
    step: u64,
    /// Nadam's running product of the momentum schedule.
    schedule: f64,
}

impl Optimizer {
    /// An optimizer over `params`, which must share one device and kind (a network's
    /// parameters do). Their values move into the optimizer's buffer; every handle on a
    /// parameter (the network's, the caller's) sees the updates. Each keeps its memory
    /// layout: a kernel laid out channels-last (NHWC) stays so, its part of the buffer in
    /// that order.
    pub fn new(config: OptimizerConfig, mut params: Vec<Tensor>) -> Self {
        let options = params.first().map_or((Kind::Float, tch::Device::Cpu), |p| (p.kind(), p.device()));
        assert!(
            params.iter().all(|p| (p.kind(), p.device()) == options),
            "an optimizer's parameters share one device and kind"
        );
        let mut spans = Vec::with_capacity(params.len());
        let mut offset = 0;
        for p in &params {
            spans.push(Span { offset, nhwc: crate::precision::is_channels_last(p), shape: p.size() });
            offset += p.numel() as i64;
        }
        let buffer = Tensor::zeros([offset], options);
        tch::no_grad(|| {
            for (p, span) in params.iter_mut().zip(&spans) {
                let part = span.of(&buffer);
                part.shallow_clone().copy_(p);
                p.set_data(&part);
            }
        });
        Self { config, params, spans, buffer, first: None, second: None, whole_buffer: true, step: 0, schedule: 1.0 }
    }

    /// Parameter `i`'s part of a buffer laid out as the parameters.
    fn part(&self, buffer: &Tensor, i: usize) -> Tensor {
        self.spans[i].of(buffer)
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
        for i in 0..self.params.len() {
            for (name, moment) in [("first", &self.first), ("second", &self.second)] {
                if let Some(t) = moment {
                    tensors.push((i, name, self.part(t, i).to_device(tch::Device::Cpu).copy()));
                }
            }
        }
        (OptimizerState { step: self.step, schedule: self.schedule }, tensors)
    }

    /// Restores what [`Optimizer::export`] gave; `moment` returns a parameter index's
    /// tensor of that name, if it was saved (a moment saved for no parameter stays 0).
    pub fn import(&mut self, state: OptimizerState, moment: impl Fn(usize, &str) -> Option<Tensor>) {
        self.step = state.step;
        self.schedule = state.schedule;
        let saved = |name| (0..self.params.len()).filter_map(|i| moment(i, name).map(|t| (i, t))).collect::<Vec<_>>();
        let (first, second) = (saved("first"), saved("second"));
        let restore = |saved: Vec<(usize, Tensor)>| {
            (!saved.is_empty()).then(|| {
                let buffer = self.buffer.zeros_like();
                tch::no_grad(|| {
                    for (i, t) in saved {
                        self.part(&buffer, i).copy_(&t);
                    }
                });
                buffer
            })
        };
        (self.first, self.second) = (restore(first), restore(second));
    }

    /// One update from the gradients of `loss`: the gradients are computed here (never
    /// accumulated into the parameters, so nothing needs zeroing), scaled together so
    /// that their joint L2 norm is at most `clip_norm` if given (PyTorch's
    /// `clip_grad_norm_`, without reading the norm back to the host), then applied.
    pub fn minimize(&mut self, loss: &Tensor, clip_norm: Option<f64>) {
        self.minimize_scaled(loss, clip_norm, None);
    }

    /// [`Optimizer::minimize`] with float16's loss scaling when `scaler` is given: the
    /// gradients of `loss` x scale are divided by the scale; when one of them is not
    /// finite nothing is updated (the step is not counted) and `false` is returned.
    pub fn minimize_scaled(&mut self, loss: &Tensor, clip_norm: Option<f64>, scaler: Option<&mut GradScaler>) -> bool {
        let scaled = scaler.as_ref().map(|s| loss * s.scale());
        let grads = Tensor::run_backward(&[scaled.as_ref().unwrap_or(loss)], &self.params, false, false);
        tch::no_grad(|| {
            let whole = self.whole_buffer && grads.iter().all(Tensor::defined);
            // the gradients as one tensor laid out as the buffer, or those that exist
            let (indices, mut grads): (Vec<usize>, Vec<Tensor>) = if whole {
                let flat: Vec<Tensor> = grads.iter().zip(&self.spans).map(|(g, span)| span.flatten(g)).collect();
                (Vec::new(), vec![Tensor::cat(&flat, 0)])
            } else {
                grads.into_iter().enumerate().filter(|(_, g)| g.defined()).unzip()
            };
            if let Some(scaler) = scaler {
                let inverse = 1.0 / scaler.scale();
                for g in &mut grads {
                    *g = &*g * inverse;
                }
                let finite: Vec<Tensor> = grads.iter().map(|g| g.isfinite().all()).collect();
                let finite = finite.is_empty() || Tensor::stack(&finite, 0).all().int64_value(&[]) != 0;
                scaler.update(finite);
                if !finite {
                    return false;
                }
            }
            if let Some(max_norm) = clip_norm {
                clip(&mut grads, max_norm);
            }
            self.step += 1;
            let t = self.step as f64;
            // Nadam's momentum schedule, as Keras computes it
            let (mu_t, mu_next) =
                (BETA1 * (1.0 - 0.5 * 0.96f64.powf(t * 0.004)), BETA1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * 0.004)));
            if self.config.name == OptimizerName::Nadam {
                self.schedule *= mu_t;
            }
            let scalars = StepScalars { t, mu_t, mu_next, schedule: self.schedule };
            let first = self.first.get_or_insert_with(|| self.buffer.zeros_like()).shallow_clone();
            let second = match self.config.name {
                OptimizerName::Adam | OptimizerName::Adamax | OptimizerName::Nadam => true,
                OptimizerName::Rmsprop => self.config.momentum > 0.0,
                OptimizerName::Sgd => false,
            }
            .then(|| self.second.get_or_insert_with(|| self.buffer.zeros_like()).shallow_clone());
            if whole {
                let mut buffer = self.buffer.shallow_clone();
                update(&self.config, &scalars, &mut buffer, &grads[0], &first, second.as_ref());
            } else {
                for (&i, g) in indices.iter().zip(&grads) {
                    let mut param = self.part(&self.buffer, i);
                    let second = second.as_ref().map(|s| self.part(s, i));
                    update(&self.config, &scalars, &mut param, g, &self.part(&first, i), second.as_ref());
                }
            }
            true
        })
    }
}

/// Where a parameter lies in the optimizer's buffers.
struct Span {
    offset: i64,
    shape: Vec<i64>,
    /// A 4-D parameter stored NHWC: (out, height, width, in) in the buffer.
    nhwc: bool,
}

impl Span {
    /// This parameter's part of `buffer`, in its shape.
    fn of(&self, buffer: &Tensor) -> Tensor {
        let part = buffer.narrow(0, self.offset, self.shape.iter().product());
        match self.nhwc {
            true => part.view([self.shape[0], self.shape[2], self.shape[3], self.shape[1]]).permute([0, 3, 1, 2]),
            false => part.view(self.shape.as_slice()),
        }
    }

    /// A tensor of this parameter's shape, flat in the buffer's order.
    fn flatten(&self, t: &Tensor) -> Tensor {
        match self.nhwc {
            true => t.permute([0, 2, 3, 1]).reshape([-1]),
            false => t.reshape([-1]),
        }
    }
}

/// Scales `grads` in place together so that their joint L2 norm is at most `max_norm`.
fn clip(grads: &mut [Tensor], max_norm: f64) {
    let Some(kind) = grads.first().map(Tensor::kind) else { return };
    // at least single precision (a half-precision sum of squares overflows)
    let sum_kind = if kind == Kind::Double { Kind::Double } else { Kind::Float };
    let squares = grads.iter().map(|g| g.square().sum(sum_kind)).collect::<Vec<_>>();
    let norm = Tensor::stack(&squares, 0).sum(sum_kind).sqrt();
    let scale = (norm + 1e-6).reciprocal().g_mul_scalar(max_norm).clamp_max(1.0).to_kind(kind);
    for g in grads {
        // not in place: a gradient from autograd may be a broadcast view, or shared
        *g = &*g * &scale;
    }
}

/// One Keras update of `param` from its gradient `g`, in place on the parameter and its
/// moments (`second` exists for the rules that need one).
fn update(
    c: &OptimizerConfig,
    s: &StepScalars,
    param: &mut Tensor,
    g: &Tensor,
    first: &Tensor,
    second: Option<&Tensor>,
) {
    let lr = c.learning_rate;
    let mut first = first.shallow_clone();
    let second = || second.expect("this rule keeps a second moment").shallow_clone();
    if c.weight_decay > 0.0 {
        let _ = param.g_mul_scalar_(1.0 - lr * c.weight_decay);
    }
    match c.name {
        OptimizerName::Adam => {
            let mut v = second();
            let _ = first.lerp_(g, 1.0 - BETA1);
            let _ = v.lerp_(&g.square(), 1.0 - BETA2);
            let lr_t = lr * (1.0 - BETA2.powf(s.t)).sqrt() / (1.0 - BETA1.powf(s.t));
            let _ = param.addcdiv_(&(&first * -lr_t), &(v.sqrt() + EPSILON));
        }
        OptimizerName::Adamax => {
            let mut u = second();
            let _ = first.lerp_(g, 1.0 - BETA1);
            let decayed = &u * BETA2;
            u.copy_(&decayed.maximum(&g.abs()));
            let lr_t = lr / (1.0 - BETA1.powf(s.t));
            let _ = param.addcdiv_(&(&first * -lr_t), &(&u + EPSILON));
        }
        OptimizerName::Nadam => {
            let mut v = second();
            let _ = first.lerp_(g, 1.0 - BETA1);
            let _ = v.lerp_(&g.square(), 1.0 - BETA2);
            let g_prime = g / (1.0 - s.schedule);
            let m_prime = &first / (1.0 - s.schedule * s.mu_next);
            let v_prime = &v / (1.0 - BETA2.powf(s.t));
            let m_bar = g_prime * (1.0 - s.mu_t) + m_prime * s.mu_next;
            let _ = param.addcdiv_(&(m_bar * -lr), &(v_prime.sqrt() + EPSILON));
        }
        OptimizerName::Rmsprop => {
            let _ = first.lerp_(&g.square(), 1.0 - c.rho);
            if c.momentum > 0.0 {
                // TF 2.1 ran its fused kernel here, epsilon inside the root
                let step = g * lr / (&first + EPSILON).sqrt();
                let mut velocity = second();
                let _ = velocity.g_mul_scalar_(c.momentum).g_add_(&step);
                let _ = param.g_sub_(&velocity);
            } else {
                let _ = param.g_sub_(&(g * lr / (first.sqrt() + EPSILON)));
            }
        }
        OptimizerName::Sgd => {
            if c.momentum > 0.0 {
                // Keras: v = momentum v - lr g; w += v (or momentum v - lr g for Nesterov)
                let _ = first.g_mul_scalar_(c.momentum).g_sub_(&(g * lr));
                if c.nesterov {
                    let _ = param.g_add_(&(&first * c.momentum - g * lr));
                } else {
                    let _ = param.g_add_(&first);
                }
            } else {
                let _ = param.g_sub_(&(g * lr));
            }
        }
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
            opt.minimize(&(&w * &w * 0.5).sum(Kind::Double), None);
            trace.push(w.double_value(&[0]));
        }
        trace
    }

    /// Equal to 1e-9: the optimizer's steps and the formulas here are a few float64
    /// operations on values near 1 (1.1e-16 each); a misplaced epsilon moves a first Adam
    /// step by 1e-7 / sqrt(0.001) = 3e-6 of it, a wrong rule by far more.
    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
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
        opt.minimize(&(&w * &w * 0.5).sum(Kind::Double), None);
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
        let quadratic = |a: &Tensor, b: &Tensor| (a * a * 0.5 + b * b * 0.5).sum(Kind::Float);
        // gradients 3 and 4: norm 5, clipped to 1 -> 0.6 and 0.8, a step of rate 1
        let mut opt = Optimizer::new(config, vec![a.shallow_clone(), b.shallow_clone()]);
        opt.minimize(&quadratic(&a, &b), Some(1.0));
        // in float32: the norm's 1e-6 guard shrinks the step by 2e-7 of it, and 2.4 and 3.2
        // are held to half a float32 step (1.2e-7): within 1e-6
        assert!((a.double_value(&[0]) - 2.4).abs() < 1e-6 && (b.double_value(&[0]) - 3.2).abs() < 1e-6);
        // under the limit nothing changes: the whole gradient, 2.4, is taken
        opt.minimize(&quadratic(&a, &b), Some(10.0));
        assert!(a.double_value(&[0]).abs() < 1e-6);
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

    /// Parameters of three shapes, and a loss of them that is not a quadratic.
    fn parameters(seed: i64) -> (Vec<Tensor>, impl Fn(&[Tensor], i64) -> Tensor) {
        tch::manual_seed(seed);
        let params: Vec<Tensor> = [vec![3, 4], vec![4], vec![2, 2, 3]]
            .iter()
            .map(|s| Tensor::randn(s.as_slice(), (Kind::Double, tch::Device::Cpu)).set_requires_grad(true))
            .collect();
        let loss = |p: &[Tensor], step: i64| {
            let x = Tensor::arange(4, (Kind::Double, tch::Device::Cpu)).sin() * (step as f64 * 0.1).cos();
            let hidden =
                (p[0].matmul(&x.unsqueeze(1)).squeeze_dim(1).tanh() + p[1].narrow(0, 0, 3)).square().sum(Kind::Double);
            hidden + (&p[2] * 0.5).cosh().sum(Kind::Double) + p[1].abs().sum(Kind::Double) * 0.1
        };
        (params, loss)
    }

    fn all_configs() -> Vec<OptimizerConfig> {
        let base = OptimizerConfig {
            name: OptimizerName::Adam,
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            weight_decay: 0.0,
        };
        let mut configs: Vec<OptimizerConfig> = [
            OptimizerName::Adam,
            OptimizerName::Adamax,
            OptimizerName::Nadam,
            OptimizerName::Rmsprop,
            OptimizerName::Sgd,
        ]
        .into_iter()
        .map(|name| OptimizerConfig { name, ..base })
        .collect();
        configs.push(OptimizerConfig { name: OptimizerName::Rmsprop, momentum: 0.9, ..base });
        configs.push(OptimizerConfig { name: OptimizerName::Sgd, momentum: 0.9, ..base });
        configs.push(OptimizerConfig { name: OptimizerName::Sgd, momentum: 0.9, nesterov: true, ..base });
        configs.push(OptimizerConfig { weight_decay: 0.1, ..base });
        configs
    }

    /// 100 steps of one optimizer, over the whole buffer or parameter by parameter; the
    /// final parameters. In double precision: what may differ is the layout, not the
    /// rounding of a gradient norm summed in another order, which RMSprop with momentum
    /// amplifies in single precision to about 1e-6 after 100 steps.
    fn hundred_steps(config: OptimizerConfig, clip_norm: Option<f64>, whole_buffer: bool) -> Vec<Vec<f64>> {
        let (params, loss) = parameters(11);
        let mut opt = Optimizer::new(config, params.iter().map(Tensor::shallow_clone).collect());
        opt.whole_buffer = whole_buffer;
        for step in 0..100 {
            opt.minimize(&loss(&params, step), clip_norm);
        }
        params.iter().map(|p| Vec::<f64>::try_from(p.detach().flatten(0, -1)).unwrap()).collect()
    }

    /// A convolution kernel and a bias trained 30 steps, laid out NCHW or NHWC.
    fn kernel_steps(channels_last: bool, whole_buffer: bool) -> (Vec<f64>, bool) {
        tch::manual_seed(5);
        let options = (Kind::Double, tch::Device::Cpu);
        let mut kernel = Tensor::randn([3, 2, 2, 2], options);
        if channels_last {
            kernel = crate::precision::channels_last(&kernel);
        }
        let params = [kernel, Tensor::randn([3], options)].map(|t| t.set_requires_grad(true));
        let x = Tensor::randn([2, 2, 5, 4], options);
        let base = OptimizerConfig {
            name: OptimizerName::Adam,
            learning_rate: 0.05,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::new(base, params.iter().map(Tensor::shallow_clone).collect());
        opt.whole_buffer = whole_buffer;
        let nhwc = crate::precision::is_channels_last(&params[0]);
        for _ in 0..30 {
            let y = x.conv2d(&params[0], Some(&params[1]), [1, 1], [0, 0], [1, 1], 1);
            opt.minimize(&(y.tanh() - 0.3).square().sum(Kind::Double), None);
        }
        (Vec::<f64>::try_from(params[0].detach().contiguous().flatten(0, -1)).unwrap(), nhwc)
    }

    #[test]
    fn kernels_laid_out_channels_last_train_as_in_nchw() {
        let (reference, nhwc) = kernel_steps(false, true);
        assert!(!nhwc);
        for whole_buffer in [true, false] {
            let (trained, nhwc) = kernel_steps(true, whole_buffer);
            assert!(nhwc, "the kernel is a NHWC view of the buffer");
            assert_eq!(trained.len(), reference.len());
            // float64 convolutions by other kernels (NHWC): sums of 8 (forward) and 24
            // (a kernel's gradient) terms in other orders, 1e-15 of values near 1, carried
            // through 30 Adam steps of rate 0.05; 1e-12 is far above that, and far below a
            // kernel trained in the wrong layout
            for (a, b) in trained.iter().zip(&reference) {
                assert!((a - b).abs() <= 1e-12, "{a} vs {b} (whole buffer: {whole_buffer})");
            }
        }
    }

    #[test]
    fn a_scaled_step_with_an_overflow_is_skipped_and_the_others_equal_unscaled_steps() {
        let (params, loss) = parameters(3);
        // copies, not parameters(3) again: the global seed is shared with the tests running
        // beside this one, which may draw between two calls
        let twins: Vec<Tensor> = params.iter().map(|p| p.detach().copy().set_requires_grad(true)).collect();
        let config = all_configs()[0];
        let mut scaled = Optimizer::new(config, params.iter().map(Tensor::shallow_clone).collect());
        let mut plain = Optimizer::new(config, twins.iter().map(Tensor::shallow_clone).collect());
        let mut scaler = GradScaler::default();
        let before: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
        // the scaled loss overflows: an infinite gradient
        let overflowing = loss(&params, 0) * 1e308;
        assert!(!scaled.minimize_scaled(&overflowing, None, Some(&mut scaler)));
        assert!(params.iter().zip(&before).all(|(p, b)| p.equal(b)), "nothing moved");
        assert_eq!(scaled.export().0.step, 0, "a skipped step is not counted");
        assert_eq!(scaler.scale(), 32768.0);
        // scaling by a power of two and back is exact: the same steps as without a scaler
        for step in 0..5 {
            assert!(scaled.minimize_scaled(&loss(&params, step), None, Some(&mut scaler)));
            plain.minimize(&loss(&twins, step), None);
        }
        assert_eq!(params.len(), twins.len());
        assert!(params.iter().zip(&twins).all(|(a, b)| a.equal(b)));
        assert_eq!(scaled.export().0.step, 5);
    }

    #[test]
    fn the_whole_buffer_update_equals_the_per_parameter_update() {
        for config in all_configs() {
            for clip_norm in [None, Some(0.5)] {
                let fused = hundred_steps(config, clip_norm, true);
                let reference = hundred_steps(config, clip_norm, false);
                let start = parameters(11).0;
                let moved = Vec::<f64>::try_from(start[0].detach().flatten(0, -1)).unwrap();
                // 100 steps of rate 0.01 move some parameter by far more than 1e-3
                assert!(moved.iter().zip(&fused[0]).any(|(a, b)| (a - b).abs() > 1e-3), "{config:?} trained nothing");
                let lengths = |steps: &[Vec<f64>]| steps.iter().map(Vec::len).collect::<Vec<_>>();
                assert_eq!(lengths(&fused), lengths(&reference), "{config:?}: the same parameters");
                // float64: the same element-wise steps, and a clipping norm summed in another
                // order (1e-16 of it) that 100 steps carry on, 10 times over with momentum
                // 0.9: 1e-12 at most. 1e-6 is far above that and far below what a moment or
                // a clip applied to the wrong parameter does (steps of rate 0.01)
                for (a, b) in fused.iter().flatten().zip(reference.iter().flatten()) {
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{config:?} clip {clip_norm:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_parameter_without_a_gradient_is_left_as_it_is() {
        let (params, loss) = parameters(5);
        let unused = Tensor::ones([2], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
        let mut all: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        all.push(unused.shallow_clone());
        let config = OptimizerConfig { weight_decay: 0.1, ..all_configs()[0] };
        let mut opt = Optimizer::new(config, all);
        let before = params[0].copy();
        for step in 0..3 {
            opt.minimize(&loss(&params, step), None);
        }
        assert_eq!(Vec::<f64>::try_from(&unused.detach()).unwrap(), [1.0, 1.0]);
        // three steps of rate 0.01 move parameters by far more than 1e-4
        assert!(!params[0].detach().allclose(&before, 1e-4, 1e-4, false), "the others still train");
        // a checkpoint's moments go back where they came from
        let (state, moments) = opt.export();
        let mut again = Optimizer::new(
            config,
            params
                .iter()
                .map(|p| p.detach().copy().set_requires_grad(true))
                .chain([unused.detach().copy().set_requires_grad(true)])
                .collect(),
        );
        again.import(state, |i, name| {
            moments.iter().find(|(j, n, _)| *j == i && *n == name).map(|(_, _, t)| t.shallow_clone())
        });
        assert_eq!(again.export().0, state);
        assert_eq!(again.export().1.len(), moments.len(), "every moment imported");
        for ((i, name, a), (_, _, b)) in again.export().1.iter().zip(&moments) {
            assert!(a.allclose(b, 0.0, 0.0, false), "moment {name} of parameter {i}");
        }
    }
}
