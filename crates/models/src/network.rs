//! A built network: its variables (a tch `VarStore` whose names say what each tensor is),
//! its forward pass, which parts are frozen, the model summary, and weight files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::layers::Trace;
use crate::{Error, cnn, transfer, unet};
use radrun_settings::{ModelSettings, ModelSummary, SummaryRow};

/// State passed down a forward pass.
pub struct Ctx<'a> {
    /// Training mode (dropout active, batch norm updating its statistics).
    pub train: bool,
    frozen: &'a [String],
    pub trace: Trace,
    /// Deep supervision's outputs of a training pass, the highest resolution first.
    pub auxiliary: Vec<Tensor>,
}

impl Ctx<'_> {
    /// Whether the batch-norm layer `name` normalises with batch statistics (and updates
    /// its running statistics): only in training mode and when it is not frozen. A frozen
    /// batch norm stays in inference mode, as in Keras.
    pub fn batch_norm_trains(&self, name: &str) -> bool {
        self.train && !is_under(self.frozen, name)
    }
}

fn is_under(prefixes: &[String], name: &str) -> bool {
    prefixes.iter().any(|p| name == p || name.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('.')))
}

/// The layers of a network, without their variables' bookkeeping.
pub trait Body: Send + fmt::Debug {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor;
}

/// A network ready to train or predict.
#[derive(Debug)]
pub struct Network {
    pub vs: nn::VarStore,
    body: Box<dyn Body>,
    /// Input shape: channels, then height and width, or z, y and x.
    pub input: Vec<i64>,
    /// The model kind as a recipe writes it ("cnn", "unet3d", ...).
    pub kind: &'static str,
    /// Variable-name prefixes currently frozen.
    frozen: Vec<String>,
    /// Variables that are parameters (not batch-norm running statistics).
    parameters: Vec<String>,
}

impl Network {
    /// Builds the network of `settings` for inputs of `input` = (channels, height, width)
    /// and `outputs` classes (or label maps), on `device`, with freshly initialised
    /// weights. Transfer models then load their backbone weights (see [`crate::weights`]).
    pub fn build(settings: &ModelSettings, input: [i64; 3], outputs: i64, device: Device) -> Result<Self, Error> {
        let [c, h, w] = input;
        settings.validate(h, w)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let body: Box<dyn Body> = match settings {
            ModelSettings::Cnn(s) => Box::new(cnn::Cnn::new(&root, s, c, &[h, w], outputs)),
            ModelSettings::Unet(s) => Box::new(unet::Unet::new(&root, s, c, outputs)),
            ModelSettings::Transfer(s) => Box::new(transfer::Transfer::new(&root, s, outputs)),
            ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_) => unreachable!("validate refuses volume kinds"),
        };
        Ok(Self::assemble(vs, body, input.to_vec(), settings.kind()))
    }

    /// Builds a volume network (`cnn3d`, `unet3d`) for inputs of `input` = (channels, z,
    /// y, x) voxels of `spacing` mm `[z, y, x]` (the U-Net's levels follow the spacing,
    /// see [`radrun_settings::Unet3dSettings::stages`]) and `outputs` classes or labels.
    pub fn build_volume(
        settings: &ModelSettings,
        input: [i64; 4],
        spacing: [f64; 3],
        outputs: i64,
        device: Device,
    ) -> Result<Self, Error> {
        settings.validate_volume()?;
        let [c, z, y, x] = input;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let body: Box<dyn Body> = match settings {
            ModelSettings::Cnn3d(s) => {
                s.validate_volume([z, y, x])?;
                Box::new(cnn::Cnn::new(&root, s, c, &[z, y, x], outputs))
            }
            ModelSettings::Unet3d(s) => {
                let plan = s.stages([z, y, x], spacing)?;
                Box::new(unet::Unet::volume(&root, s, &plan, c, outputs))
            }
            ModelSettings::Cnn(_) | ModelSettings::Unet(_) | ModelSettings::Transfer(_) => {
                unreachable!("validate_volume refuses 2D kinds")
            }
        };
        Ok(Self::assemble(vs, body, input.to_vec(), settings.kind()))
    }

    fn assemble(vs: nn::VarStore, body: Box<dyn Body>, input: Vec<i64>, kind: &'static str) -> Self {
        let parameters = {
            let trainable: Vec<Tensor> = vs.trainable_variables();
            let mut names: Vec<String> = vs
                .variables()
                .into_iter()
                .filter(|(_, t)| trainable.iter().any(|p| p.data_ptr() == t.data_ptr()))
                .map(|(n, _)| n)
                .collect();
            names.sort();
            names
        };
        Self { vs, body, input, kind, frozen: Vec::new(), parameters }
    }

    /// Runs the network on a batch `[n, channels, height, width]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_supervised(x, train).0
    }

    /// The forward pass with, in training mode, the outputs of deep supervision
    /// (`model.deep_supervision`), the highest resolution first; none otherwise.
    pub fn forward_supervised(&self, x: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let mut ctx = Ctx { train, frozen: &self.frozen, trace: Trace::off(), auxiliary: Vec::new() };
        let out = self.body.forward(x, &mut ctx);
        (out, ctx.auxiliary)
    }

    /// Runs the network in inference mode on `x` and keeps the output of the stage
    /// `layer` (a layer name of the model summary) too: (logits, that output). `None`
    /// when the network has no such stage.
    pub fn forward_tapped(&self, x: &Tensor, layer: &str) -> Option<(Tensor, Tensor)> {
        let mut ctx = Ctx { train: false, frozen: &self.frozen, trace: Trace::tapping(layer), auxiliary: Vec::new() };
        let out = self.body.forward(x, &mut ctx);
        ctx.trace.tapped().map(|kept| (out, kept))
    }

    /// The stages whose outputs are feature maps (`[n, channels, height, width]` with
    /// more than one pixel), in forward order: where Grad-CAM can look. The last one is
    /// the last convolutional stage.
    pub fn feature_map_layers(&self) -> Vec<String> {
        self.summary()
            .rows
            .into_iter()
            .filter(|r| r.output_shape.len() == 4 && r.output_shape[2] * r.output_shape[3] > 1)
            .map(|r| r.layer)
            .collect()
    }

    /// Freezes the variables whose names start with one of `prefixes` (a whole name
    /// segment: `features.1` covers `features.1.weight`, not `features.10.weight`);
    /// everything else becomes trainable. Frozen batch-norm layers run in inference mode.
    pub fn set_frozen(&mut self, prefixes: Vec<String>) {
        for (name, mut tensor) in self.vs.variables() {
            let trainable = self.parameters.binary_search(&name).is_ok() && !is_under(&prefixes, &name);
            let _ = tensor.requires_grad_(trainable);
        }
        self.frozen = prefixes;
    }

    /// The parameters the optimizer should update, sorted by name.
    pub fn trainable_parameters(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        self.parameters
            .iter()
            .filter(|n| !is_under(&self.frozen, n))
            .map(|n| (n.clone(), vars[n].shallow_clone()))
            .collect()
    }

    /// Names of all parameters (not running statistics), sorted.
    pub fn parameter_names(&self) -> &[String] {
        &self.parameters
    }

    /// Layer table with output shapes and parameter counts, from one forward pass of a
    /// zero image in inference mode.
    pub fn summary(&self) -> ModelSummary {
        let shape: Vec<i64> = std::iter::once(1).chain(self.input.iter().copied()).collect();
        let x = Tensor::zeros(shape.as_slice(), (Kind::Float, self.vs.device()));
        let mut ctx = Ctx { train: false, frozen: &self.frozen, trace: Trace::recording(), auxiliary: Vec::new() };
        let _ = tch::no_grad(|| self.body.forward(&x, &mut ctx));
        let vars = self.vs.variables();
        let count = |names: &mut dyn Iterator<Item = &String>| -> i64 { names.map(|n| vars[n].numel() as i64).sum() };
        let rows = ctx
            .trace
            .rows
            .into_iter()
            .map(|(layer, shape)| {
                let prefix = [layer.clone()];
                let params = count(&mut vars.keys().filter(|n| is_under(&prefix, n)));
                SummaryRow { layer, output_shape: shape, params }
            })
            .collect();
        let trainable = self.trainable_parameters();
        ModelSummary {
            kind: self.kind.to_string(),
            input: self.input.clone(),
            rows,
            total_params: count(&mut vars.keys()),
            parameters: count(&mut self.parameters.iter()),
            trainable_params: trainable.iter().map(|(_, t)| t.numel() as i64).sum(),
        }
    }

    /// Writes all variables (parameters and batch-norm statistics) as safetensors to
    /// `path`, in NCHW order whatever their layout in memory, with their checksum (see
    /// [`crate::weights`]). Not atomic by itself: the runner writes through its atomic
    /// writer.
    pub fn write_weights(&self, path: &Path) -> Result<(), Error> {
        let vars: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let named: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::weights::write_safetensors(&named, path)
    }

    /// Loads every variable from a weights file written by [`Network::write_weights`],
    /// checked against its checksum ([`Error::Damaged`] when they differ).
    pub fn load(&mut self, path: &Path) -> Result<(), Error> {
        let tensors = crate::weights::read_tensors(path)?;
        crate::weights::copy_into(&self.vs, tensors, path, crate::weights::Missing::Error)
    }
}
