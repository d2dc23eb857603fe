//! The paragraphs of the methods section that differ for volume runs (`data.dims = 3`):
//! the data (cases, formats, grids), the preprocessing fitted on the training cases
//! (`preprocessing.json`) and the test-time segmentation and its metrics. Every number is
//! the volume data summary's (`data_summary.json`), the preprocessing's or the resolved
//! recipe's, measured ones rounded to 4 decimal places.

use std::fmt::Write as _;

use radrun_data::Task;
use radrun_data::volume_settings::{Normalize, TargetSpacing};
use serde_json::Value;

use super::{Finished, counts, entries, grouping, split, toml_text};

pub(super) fn data(run: &Finished) -> String {
    let d = &run.data;
    let classes: Vec<&str> = d["classes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let task = match run.settings.data.task {
        Task::Segmentation => format!("segmentation of {} structure(s)", classes.len()),
        _ => format!("classification of whole volumes into one of {} classes", classes.len()),
    };
    let mut text = format!(
        "The task was {task} ({}), on the volumes in `{}` ({}).",
        classes.join(", "),
        d["root"].as_str().unwrap_or_default(),
        d["layout"].as_str().unwrap_or_default()
    );
    let units = super::units(run);
    let sum = |key: &str| ["train", "validation"].iter().filter_map(|s| split(d, s)?[key].as_u64()).sum::<u64>();
    let _ = write!(text, " The training data held {} cases of {} {units}", sum("cases"), sum("groups"));
    if let Some(test) = split(d, "test") {
        let source = match d["test_held_out"].as_f64() {
            Some(fraction) => format!(
                "held out of the training cases before anything else (`data.test_fraction = {fraction}`, whole \
                 patients, seed {})",
                run.settings.data.split_seed
            ),
            None => format!("a separate folder (`{}`)", test["source"].as_str().unwrap_or_default()),
        };
        let per =
            if run.settings.data.task == Task::Segmentation { "cases holding each structure" } else { "per class" };
        let _ = write!(
            text,
            "; the test set, {source}, {} cases of {} {units}, {per}: {}.",
            test["cases"],
            test["groups"],
            counts(&test["per_class"])
        );
    } else {
        text += ".";
    }
    let _ = write!(text, " {}", grouping(run));
    let _ = write!(text, " The cases were {}", counts(&d["formats"]));
    if d["dicom_modalities"].as_object().is_some_and(|m| !m.is_empty()) {
        let _ = write!(text, " (DICOM modalities {})", counts(&d["dicom_modalities"]));
    }
    let names = d["channel_names"].as_array().filter(|n| !n.is_empty());
    let names = names.map(|n| format!(" ({})", n.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")));
    let _ = write!(
        text,
        ", of {} channel(s){}, stored with axes {}. Turned to `data.orientation = {}`, their shapes [z, y, x] \
         ranged from {} to {} voxels (median {}) and their spacings from {} to {} mm (median {}).",
        d["channels"],
        names.unwrap_or_default(),
        counts(&d["stored_axes"]),
        toml_text(&run.settings.data.orientation),
        axes(&d["shape"]["min"]),
        axes(&d["shape"]["max"]),
        axes(&d["shape"]["median"]),
        axes(&d["spacing_mm"]["min"]),
        axes(&d["spacing_mm"]["max"]),
        axes(&d["spacing_mm"]["median"])
    );
    let ignored = d["ignored"].as_array().map_or(0, Vec::len);
    if ignored > 0 {
        let _ = write!(text, " {ignored} file(s) that are neither volumes nor DICOM were ignored.");
    }
    for (key, words) in [
        ("oblique", "case(s) had oblique axes, kept with their rotation"),
        ("nan_zeroed", "NaN voxel(s) were read as 0 (`data.nan = \"zero\"`)"),
        ("masks_resampled", "mask(s) were resampled onto their image's grid (`data.mask_geometry = \"resample\"`)"),
        ("unlabelled", "case(s) without labels were not used"),
    ] {
        if d[key].as_u64().is_some_and(|n| n > 0) {
            let _ = write!(text, " {} {words}.", d[key]);
        }
    }
    text + &super::recorded_facts(run)
}

/// A recorded number rounded to 4 decimal places, written shortest ("1.4" of a float32
/// spacing read as 1.399999976158142, "44" of 44.0).
fn rounded(value: &Value) -> String {
    value.as_f64().map_or_else(|| value.to_string(), |x| format!("{}", (x * 1e4).round() / 1e4))
}

/// `[z, y, x]` of a recorded array of three numbers, each [`rounded`].
fn axes(values: &Value) -> String {
    let values: Vec<String> = values.as_array().into_iter().flatten().map(rounded).collect();
    format!("[{}]", values.join(", "))
}

/// `[z, y, x]` of a recorded `(x, y, z)` array (preprocessing.json's order).
fn axes_from_xyz(values: &Value) -> String {
    axes(&Value::Array(values.as_array().into_iter().flatten().rev().cloned().collect()))
}

pub(super) fn preprocessing(run: &Finished) -> String {
    let (s, p) = (&run.settings, &run.preprocessing);
    let d = &s.data;
    let mut text = match d.orientation {
        radrun_data::volume::Orientation::AsStored => "Each case kept its stored axes".to_string(),
        orientation => format!(
            "Each case was turned to `data.orientation = {}` by flips and axis permutations",
            toml_text(&orientation)
        ),
    };
    if d.crop_foreground {
        text += ", cropped to the box of its voxels above 0 (`data.crop_foreground`)";
    }
    match d.spacing {
        TargetSpacing::AsStored => text += ", its spacing kept as stored (`data.spacing = \"as_stored\"`)",
        spacing => {
            let rule = match spacing {
                TargetSpacing::Median => format!(", the median of the run's {} training cases", p["cases"]),
                _ => String::new(),
            };
            let _ = write!(
                text,
                ", then resampled to a spacing of {} mm (`data.spacing = {}`{rule}), images by `data.interpolation \
                 = {}` (nearest neighbour along the coarse axis of an anisotropic case, as nnU-Net)",
                axes_from_xyz(&p["spacing"]),
                toml_text(&spacing),
                toml_text(&d.interpolation),
            );
            if d.task == Task::Segmentation {
                let _ = write!(text, " and masks by `data.mask_interpolation = {}`", toml_text(&d.mask_interpolation));
            }
        }
    }
    let _ = write!(text, ", and its intensities scaled by `data.normalize = {}`", toml_text(&d.normalize));
    if d.normalize == Normalize::Ct {
        let voxels = if d.task == Task::Segmentation { "labelled voxels" } else { "voxels" };
        for (channel, ct) in p["ct"].as_array().into_iter().flatten().enumerate() {
            let _ = write!(
                text,
                "{} channel {channel} clipped to [{}, {}] (the 0.5th and 99.5th percentiles of an evenly strided \
                 sample of the training cases' {voxels}), less the sample's mean {}, over its SD {} (both of the \
                 values before clipping, as nnU-Net)",
                if channel == 0 { ":" } else { ";" },
                rounded(&ct["lower"]),
                rounded(&ct["upper"]),
                rounded(&ct["mean"]),
                rounded(&ct["sd"])
            );
        }
    }
    let input = axes(&run.data["input_voxels"]);
    let iterations = match s.train.iterations_per_epoch {
        0 => "enough batches per epoch to see each training case once".to_string(),
        n => format!("{n} batches per epoch (`train.iterations_per_epoch`)"),
    };
    match d.task {
        Task::Segmentation => {
            let _ = write!(
                text,
                ". The network was trained on patches of {input} voxels [z, y, x] (`data.patch_size = {}`), \
                 {iterations}, a share {} of each batch centred on a labelled voxel (`data.foreground_oversample`).",
                toml_text(&d.patch_size),
                d.foreground_oversample
            );
        }
        _ => {
            let _ = write!(
                text,
                ". The network read each case cropped or padded about its centre to {input} voxels [z, y, x], \
                 {iterations}."
            );
        }
    }
    if s.augment.enabled {
        let _ = write!(text, " Training patches were augmented on the fly: {}.", entries(&s.augment.volume));
    } else {
        text += " No augmentation was used (`augment.enabled = false`).";
    }
    text
}

/// What a segmentation's test cases went through, and what was measured on them.
pub(super) fn segmentation_metrics(run: &Finished) -> String {
    let e = &run.settings.eval;
    let mut text = format!(
        " Each test case was segmented whole by a sliding window of the training patch, neighbours overlapping by \
         {} (`eval.overlap`), blended by `eval.blend = {}`",
        e.overlap,
        toml_text(&e.blend)
    );
    // as the run's sliding window: mirrored along the axes training mirrored, if it did
    let s = &run.settings;
    let mirrored = if e.mirror && s.augment.enabled { s.augment.volume.mirrored_axes() } else { Vec::new() };
    if !mirrored.is_empty() {
        let axes: Vec<&str> = mirrored.iter().map(|&a| ["z", "y", "x"][a]).collect();
        let _ = write!(
            text,
            ", each window also predicted mirrored along every combination of the axes training mirrored ({}) and \
             the outputs averaged",
            axes.join(", ")
        );
    }
    if !e.keep_largest_component.is_empty() {
        let labels: Vec<String> = e.keep_largest_component.iter().map(u32::to_string).collect();
        let _ = write!(text, "; label(s) {} kept their largest connected component only", labels.join(", "));
    }
    let _ = write!(
        text,
        "; its mask was put back on the case's own scan and scored there, in mm. Per case and structure: Dice, IoU, \
         the normalised surface Dice at a tolerance of {} mm (`eval.nsd_tolerance`), the 95th percentile Hausdorff \
         distance and the average symmetric surface distance (`volume_metrics.csv`); the headline is the mean Dice, \
         IoU and surface Dice and the median distances over every structure and case.",
        e.nsd_tolerance
    );
    text
}
