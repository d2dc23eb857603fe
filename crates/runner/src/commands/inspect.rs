//! `radrun inspect` (and its alias `radrun dicom inspect`): what radrun reads from each
//! file, and whether it can decode it (it decodes each one to find out). DICOM: transfer
//! syntax, photometric interpretation, bits, rescale, window, frames, spacing and
//! position; NIfTI files and folders of one DICOM series: the volume's geometry (shape,
//! spacing, origin, direction, affine and where it came from, orientation) and its
//! values (after scaling; modality values for a series); PNG and JPEG: size and bits. No patient identity: only whether a PatientID is present.

use std::path::{Path, PathBuf};

use radrun_data::FileKind;
use radrun_data::decode::{DecodeOptions, DicomInfo, decode_bytes};
use radrun_data::nifti::{self, NiftiOptions, NiftiVolume};
use radrun_data::series_volume;
use radrun_data::volume::Volume;
use radrun_data::volume_settings::DEFAULT_MAX_VOXELS;
use serde::Serialize;

use crate::error::RadrunError;

/// One file's inspection. No patient identity: only whether a PatientID is present.
#[derive(Debug, Serialize)]
struct Inspection {
    file: String,
    decodes: bool,
    /// Why not, when it does not.
    reason: Option<String>,
    rows: Option<usize>,
    columns: Option<usize>,
    bits_stored: Option<u16>,
    patient_id_present: Option<bool>,
    /// What the decoder accepted and noted (values from Enhanced functional groups,
    /// bytes after a JPEG's end), for the first frame.
    notes: Vec<String>,
    #[serde(flatten)]
    dicom: Option<PublicInfo>,
    /// A NIfTI volume's header, geometry and values.
    volume: Option<VolumeFacts>,
}

/// [`DicomInfo`] without the identity attributes.
#[derive(Debug, Serialize)]
struct PublicInfo {
    modality: Option<String>,
    transfer_syntax: String,
    photometric: String,
    samples_per_pixel: usize,
    bits_allocated: u32,
    frames: u32,
    rescale: Option<[f64; 2]>,
    window: (f64, f64),
    pixel_spacing_mm: Option<[f64; 2]>,
    slice_thickness_mm: Option<f64>,
    position_mm: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    instance_number: Option<i64>,
}

impl From<DicomInfo> for PublicInfo {
    fn from(d: DicomInfo) -> Self {
        Self {
            modality: d.modality,
            transfer_syntax: d.transfer_syntax,
            photometric: d.photometric,
            samples_per_pixel: d.samples_per_pixel,
            bits_allocated: d.bits_allocated,
            frames: d.frames,
            rescale: d.rescale,
            window: d.window,
            pixel_spacing_mm: d.pixel_spacing_mm,
            slice_thickness_mm: d.slice_thickness_mm,
            position_mm: d.position_mm,
            orientation: d.orientation,
            instance_number: d.instance_number,
        }
    }
}

fn inspect_one(file: &Path) -> Inspection {
    let name = radrun_data::paths::path_text(file);
    if nifti::is_nifti(file) {
        return inspect_volume(file, name);
    }
    if file.is_dir() {
        return inspect_series(file, name);
    }
    let kind = FileKind::of(file).unwrap_or(FileKind::Dicom);
    let decoded = std::fs::read(file)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|bytes| decode_bytes(file, bytes, kind, &DecodeOptions::default()).map_err(|e| e.reason));
    match decoded {
        Ok((image, info)) => Inspection {
            file: name,
            decodes: true,
            reason: None,
            rows: Some(image.height),
            columns: Some(image.width),
            bits_stored: Some(info.bits),
            patient_id_present: info.dicom.as_ref().map(|d| d.patient_id.is_some()),
            notes: info.notes.iter().map(ToString::to_string).collect(),
            dicom: info.dicom.map(Into::into),
            volume: None,
        },
        Err(reason) => refused(name, reason),
    }
}

fn refused(file: String, reason: String) -> Inspection {
    Inspection {
        file,
        decodes: false,
        reason: Some(reason),
        rows: None,
        columns: None,
        bits_stored: None,
        patient_id_present: None,
        notes: Vec::new(),
        dicom: None,
        volume: None,
    }
}

/// What radrun reads from a NIfTI file: its header, the geometry of the volume (RAS+ mm,
/// as stored) and its values after scaling. A 4D file is read as channels here.
fn inspect_volume(file: &Path, name: String) -> Inspection {
    let options = NiftiOptions { max_voxels: DEFAULT_MAX_VOXELS, channels_from_last_axis: true, nan_to_zero: true };
    let read = match nifti::read(file, &options) {
        Ok(read) => read,
        Err(e) => return refused(name, e.reason),
    };
    let mut notes = Vec::new();
    if read.volume.channels > 1 {
        notes.push(format!(
            "its fourth axis ({} volumes) is read as channels only with data.channels_from = \"last_axis\"",
            read.volume.channels
        ));
    }
    if read.nan_voxels > 0 {
        notes.push(format!(
            "{} NaN voxels, 0 in these values; a dataset refuses them unless data.nan = \"zero\"",
            read.nan_voxels
        ));
    }
    notes.extend(oblique_note(&read.volume));
    let volume = VolumeFacts::of_nifti(&read);
    Inspection { notes, volume: Some(volume), decodes: true, reason: None, ..refused(name, String::new()) }
}

/// What radrun reads from a folder holding one DICOM series: the volume its slices make
/// (ordered by position; spacing from the positions) and its modality values.
fn inspect_series(folder: &Path, name: String) -> Inspection {
    let files = match series_volume::dicom_files_under(folder) {
        Ok(files) => files,
        Err(e) => return refused(name, format!("cannot list the folder: {e}")),
    };
    let read = match series_volume::read_series(&files, DEFAULT_MAX_VOXELS) {
        Ok(read) => read,
        Err(e) => return refused(name, e.to_string()),
    };
    let slices = read.slices.len();
    let format = format!("DICOM series, {slices} slices from {} file(s)", files.len());
    let mut volume = VolumeFacts::of(&read.volume, format, "modality values".into());
    volume.affine_from = "DICOM ImagePositionPatient, ImageOrientationPatient and PixelSpacing".into();
    let notes = oblique_note(&read.volume).into_iter().collect();
    Inspection { notes, volume: Some(volume), decodes: true, reason: None, ..refused(name, String::new()) }
}

fn oblique_note(volume: &Volume) -> Option<String> {
    volume
        .is_oblique()
        .then(|| "oblique: its axes are not along the patient's; reorienting keeps the rotation".to_string())
}

/// A volume's facts as `inspect` prints them.
#[derive(Debug, Serialize)]
struct VolumeFacts {
    format: String,
    datatype: String,
    shape: [usize; 3],
    channels: usize,
    spacing_mm: [f64; 3],
    origin_mm: [f64; 3],
    /// Column `a` is array axis `a`'s unit direction in RAS+.
    direction: [[f64; 3]; 3],
    affine: [[f64; 4]; 4],
    /// nibabel's axis codes (`RAS`, `LPS`, ...).
    orientation: String,
    oblique: bool,
    /// NIfTI: "sform", "qform" or "pixdim"; a DICOM series: the attributes.
    affine_from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sform_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qform_code: Option<i32>,
    /// NIfTI's scl_slope and scl_inter.
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling: Option<[f64; 2]>,
    values: ValueStats,
}

#[derive(Debug, Serialize)]
struct ValueStats {
    min: f64,
    max: f64,
    mean: f64,
    sd: f64,
}

impl VolumeFacts {
    fn of_nifti(read: &NiftiVolume) -> Self {
        let info = &read.info;
        let gz = if info.gzipped { ", gzip" } else { "" };
        let order = if info.big_endian { "big-endian" } else { "little-endian" };
        let format = format!("NIfTI-{}{gz}, {order}", info.version);
        VolumeFacts {
            affine_from: info.affine_from.into(),
            sform_code: Some(info.sform_code),
            qform_code: Some(info.qform_code),
            scaling: Some([info.scl_slope, info.scl_inter]),
            ..Self::of(&read.volume, format, info.datatype.clone())
        }
    }

    fn of(volume: &Volume, format: String, datatype: String) -> Self {
        VolumeFacts {
            format,
            datatype,
            shape: volume.shape,
            channels: volume.channels,
            spacing_mm: volume.spacing(),
            origin_mm: volume.origin(),
            direction: volume.direction(),
            affine: volume.affine,
            orientation: volume.axis_codes(),
            oblique: volume.is_oblique(),
            affine_from: String::new(),
            sform_code: None,
            qform_code: None,
            scaling: None,
            values: ValueStats::of(&volume.voxels),
        }
    }
}

impl ValueStats {
    /// Min, max, mean and population SD, summed in f64.
    fn of(values: &[f32]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(f64::from(v)), hi.max(f64::from(v))));
        ValueStats { min, max, mean, sd: variance.sqrt() }
    }
}

pub fn inspect(files: &[PathBuf], json: bool) -> Result<(), RadrunError> {
    let inspections: Vec<Inspection> = files.iter().map(|f| inspect_one(f)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&inspections).expect("inspections serialize"));
    } else {
        for i in &inspections {
            print!("{}", render(i));
        }
    }
    let unreadable = inspections.iter().filter(|i| !i.decodes).count();
    match unreadable {
        0 => Ok(()),
        _ => Err(RadrunError::FilesUnreadable { unreadable, total: inspections.len() }),
    }
}

fn render(i: &Inspection) -> String {
    let mut out = format!("{}\n", i.file);
    let mut line = |key: &str, value: String| out.push_str(&format!("  {key:<16} {value}\n"));
    if !i.decodes {
        line("decodes", format!("no: {}", i.reason.as_deref().unwrap_or("unknown")));
        return out;
    }
    if let Some(v) = &i.volume {
        render_volume(v, &i.notes, &mut line);
        return out;
    }
    let (rows, columns) = (i.rows.unwrap_or(0), i.columns.unwrap_or(0));
    line("decodes", format!("yes, {rows} x {columns} pixels"));
    let Some(d) = &i.dicom else {
        line("bits", i.bits_stored.unwrap_or(0).to_string());
        return out;
    };
    line("transfer syntax", d.transfer_syntax.clone());
    line("modality", d.modality.clone().unwrap_or_else(|| "(none)".into()));
    line("photometric", format!("{} ({} sample(s) per pixel)", d.photometric, d.samples_per_pixel));
    line("bits", format!("{} stored of {} allocated", i.bits_stored.unwrap_or(0), d.bits_allocated));
    line("frames", d.frames.to_string());
    line(
        "rescale",
        match d.rescale {
            Some([slope, intercept]) => format!("slope {slope}, intercept {intercept}"),
            None if d.photometric == "PALETTE COLOR" => "none (palette colour)".into(),
            None if d.samples_per_pixel == 1 => "Modality LUT Sequence".into(),
            None => "none (colour)".into(),
        },
    );
    line("window", format!("center {}, width {} (what window = \"auto\" uses)", d.window.0, d.window.1));
    let spacing = d.pixel_spacing_mm.map_or("(none)".into(), |[r, c]| format!("{r} x {c} mm"));
    line("pixel spacing", spacing);
    if let Some(t) = d.slice_thickness_mm {
        line("slice thickness", format!("{t} mm"));
    }
    if let Some([x, y, z]) = d.position_mm {
        line("position", format!("({x}, {y}, {z}) mm"));
    }
    if let Some(n) = d.instance_number {
        line("instance number", n.to_string());
    }
    line("patient id", if i.patient_id_present == Some(true) { "present" } else { "absent" }.into());
    if !i.notes.is_empty() {
        line("notes", i.notes.join("; "));
    }
    out
}

fn render_volume(v: &VolumeFacts, notes: &[String], line: &mut impl FnMut(&str, String)) {
    let [x, y, z] = v.shape;
    let channels = if v.channels > 1 { format!(" x {} channels", v.channels) } else { String::new() };
    line("decodes", format!("yes, {x} x {y} x {z} voxels{channels}"));
    line("format", format!("{}, {}", v.format, v.datatype));
    let [sx, sy, sz] = v.spacing_mm.map(mm);
    line("spacing", format!("{sx} x {sy} x {sz} mm"));
    let [ox, oy, oz] = v.origin_mm.map(mm);
    line("origin", format!("({ox}, {oy}, {oz}) mm, RAS+"));
    let oblique = if v.oblique { ", oblique" } else { "" };
    line("orientation", format!("{}{oblique}", v.orientation));
    let codes = match (v.sform_code, v.qform_code) {
        (Some(s), Some(q)) => format!(" (sform code {s}, qform code {q})"),
        _ => String::new(),
    };
    line("affine", format!("from the {}{codes}", v.affine_from));
    for row in &v.affine[..3] {
        line("", format!("{:>10.4} {:>10.4} {:>10.4} {:>10.4}", row[0], row[1], row[2], row[3]));
    }
    match v.scaling {
        Some([slope, inter]) if slope != 0.0 && slope.is_finite() => line("scaling", format!("x {slope} + {inter}")),
        Some(_) => line("scaling", "none".into()),
        None => {}
    }
    let s = &v.values;
    line("values", format!("min {}, max {}, mean {:.4}, sd {:.4}", s.min, s.max, s.mean, s.sd));
    if !notes.is_empty() {
        line("notes", notes.join("; "));
    }
}

/// Millimetres to a micrometre, without trailing zeros (headers hold f32 values:
/// 0.800000011920929 is 0.8 written in single precision).
fn mm(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.into() }
}
