//! `radrun export RUN`: a finished run's model for PyTorch users, as TorchScript (the
//! network traced with its preprocessing inside and probabilities out) or as its
//! safetensors weights (torchvision names for backbones), each with `<out>.json`, the
//! card that says what goes in and what comes out.
//!
//! ONNX is refused: libtorch's C++ API, which radrun runs on, has no ONNX exporter (it
//! lives in PyTorch's Python package, which also fails on the traced file: the tensor
//! types are lost), and a half-made ONNX file is worse than none.

use std::path::{Path, PathBuf};

use radrun_data::{DataSettings, Task};
use radrun_settings::{ModelSettings, Normalize};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::predict::{TrainedRun, inside};
use radrun_runner::cli::{ExportArgs, ExportFormat};
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::store::{write_atomic, write_atomic_with};

/// `<out>.json`: what a user of the exported file needs to feed it and read it.
#[derive(Serialize)]
struct Card<'a> {
    radrun_version: &'a str,
    run: String,
    format: ExportFormat,
    /// The run's weights file that was exported.
    weights: String,
    task: Task,
    classes: &'a [String],
    input: String,
    /// Per-channel ImageNet (mean, std) of a backbone: inside the TorchScript model; to
    /// apply to the input before the safetensors weights' network.
    normalize: Option<Normalization>,
    output: String,
    /// A two-class run's positive class and the threshold chosen on validation.
    threshold: Option<Threshold<'a>>,
    /// The run's `[data]` and `[model]` sections as it ran.
    data: &'a DataSettings,
    model: &'a ModelSettings,
}

#[derive(Serialize)]
struct Normalization {
    mean: [f64; 3],
    std: [f64; 3],
}

#[derive(Serialize)]
struct Threshold<'a> {
    positive_class: &'a str,
    threshold: f64,
}

pub fn export(args: &ExportArgs) -> Result<(), RadrunError> {
    let extension = match args.format {
        ExportFormat::Torchscript => "pt",
        ExportFormat::Safetensors => "safetensors",
        ExportFormat::Onnx => {
            return Err(usage_error(
                &args.run,
                "--format onnx: radrun does not write ONNX (libtorch, which it runs on, has no ONNX exporter); \
                 for a backbone run, export safetensors, load them into torchvision as docs/commands.md shows and \
                 call torch.onnx.export in Python"
                    .into(),
            ));
        }
    };
    let run = TrainedRun::open(&args.run, Device::Cpu)?;
    let run_id = args.run.canonicalize().ok().and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.{extension}", run_id.as_deref().unwrap_or("model"))));
    if inside(&out, &run.folder) {
        return Err(usage_error(&out, "is inside the run folder; write the export elsewhere (--out)".into()));
    }
    let card_path = PathBuf::from(format!("{}.json", out.display()));
    let card = serde_json::to_vec_pretty(&card(&run, args.format)).expect("the card serialises");
    match args.format {
        ExportFormat::Torchscript => write_torchscript(run, &out)?,
        // the bytes, not the file: a copy would keep the source's permissions
        _ => write_atomic_with(&out, |tmp| std::fs::write(tmp, std::fs::read(&run.weights)?))?,
    }
    write_atomic(&card_path, &card)?;
    eprintln!(
        "{} exported -> {} (what it takes and gives: {})",
        args.run.display(),
        out.display(),
        card_path.display()
    );
    Ok(())
}

/// (channels, height, width) of a 2D network: [`TrainedRun::open`] builds no other.
fn image_input(network: &radrun_models::Network) -> [i64; 3] {
    <[i64; 3]>::try_from(network.input.as_slice()).expect("TrainedRun::open builds 2D networks only")
}

/// The card of `run` exported as `format`.
fn card(run: &TrainedRun, format: ExportFormat) -> Card<'_> {
    let data = &run.settings.data;
    let [channels, height, width] = image_input(&run.network);
    let normalize = match &run.settings.model {
        ModelSettings::Transfer(t) if t.normalize == Normalize::Imagenet => {
            let (mean, std) = t.backbone.facts().normalization;
            Some(Normalization { mean, std })
        }
        _ => None,
    };
    let output = match data.task {
        Task::Classification => "probabilities [n, classes]: softmax, in the order of `classes`",
        Task::Multilabel => "probabilities [n, labels]: each label's sigmoid, in the order of `classes`",
        Task::Segmentation => {
            "probabilities [n, maps, height, width]: per pixel the softmax over the labels of `classes` \
             (one map: the sigmoid of the foreground)"
        }
    };
    let output = match format {
        ExportFormat::Torchscript => output.to_string(),
        _ => format!("the network's logits; {output} after that function"),
    };
    Card {
        radrun_version: env!("CARGO_PKG_VERSION"),
        run: run.folder.display().to_string(),
        format,
        weights: run.weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        task: data.task,
        classes: &run.classes,
        input: format!(
            "float32 [n, {channels}, {height}, {width}], values 0..1: each image as radrun decodes it (8-bit \
             PNG or JPEG / 255, 16-bit / 65535, DICOM rescaled and windowed by `data.window`; colour PNG and \
             JPEG as gray), its {channels} channel(s) as `data.channels`, `data.window` and `data.series` \
             make them, resized to {height} x {width} by `data.resize` (Pillow's rule)"
        ),
        normalize,
        output,
        threshold: run
            .threshold
            .map(|(positive, threshold)| Threshold { positive_class: &run.classes[positive], threshold }),
        data,
        model: &run.settings.model,
    }
}

/// Traces the network on the CPU in inference mode, from the input batch to the
/// probabilities radrun predicts, and saves the TorchScript module. The batch size is
/// free; the image size is the run's.
fn write_torchscript(run: TrainedRun, out: &Path) -> Result<(), RadrunError> {
    let TrainedRun { mut network, settings, folder, .. } = run;
    // weights are constants of the traced graph: nothing may require a gradient
    network.vs.freeze();
    let [c, h, w] = image_input(&network);
    let task = settings.data.task;
    let example = Tensor::rand([2, c, h, w], (Kind::Float, Device::Cpu));
    let module = tch::CModule::create_by_tracing("radrun", "forward", &[example], &mut |inputs| {
        vec![radrun_train::predict::probabilities(&network.forward(&inputs[0], false), task)]
    })
    .map_err(|e| RadrunError::Libtorch {
        what: format!("trace the network of {}", folder.display()),
        source: e.into(),
    })?;
    // libtorch names the archive after the file's stem, which a `.partial-*` name lacks
    write_atomic_with(out, |tmp| {
        let named = tmp.with_extension("pt");
        let saved = module.save(&named).map_err(|e| std::io::Error::other(e.to_string()));
        if saved.is_err() {
            let _ = std::fs::remove_file(&named);
        }
        saved.and_then(|()| std::fs::rename(&named, tmp))
    })?;
    Ok(())
}
