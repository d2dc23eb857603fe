//! `radrun dicom inspect`: what radrun reads from DICOM files, and whether it can decode
//! them (it decodes each one to find out).

use std::path::{Path, PathBuf};

use radrun_data::FileKind;
use radrun_data::decode::{DecodeOptions, DicomInfo, decode_bytes};
use serde::Serialize;

use crate::cli::DicomCommand;
use crate::error::RadrunError;

pub fn dicom(command: DicomCommand) -> Result<(), RadrunError> {
    match command {
        DicomCommand::Inspect { files, json } => inspect(&files, json),
    }
}

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
    #[serde(flatten)]
    dicom: Option<PublicInfo>,
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
    let name = radrun_data::dataset::path_text(file);
    let decoded = std::fs::read(file)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|bytes| decode_bytes(file, bytes, FileKind::Dicom, &DecodeOptions::default()).map_err(|e| e.reason));
    match decoded {
        Ok((image, info)) => {
            let dicom = info.dicom.expect("a DICOM file has DICOM facts");
            Inspection {
                file: name,
                decodes: true,
                reason: None,
                rows: Some(image.height),
                columns: Some(image.width),
                bits_stored: Some(info.bits),
                patient_id_present: Some(dicom.patient_id.is_some()),
                dicom: Some(dicom.into()),
            }
        }
        Err(reason) => Inspection {
            file: name,
            decodes: false,
            reason: Some(reason),
            rows: None,
            columns: None,
            bits_stored: None,
            patient_id_present: None,
            dicom: None,
        },
    }
}

fn inspect(files: &[PathBuf], json: bool) -> Result<(), RadrunError> {
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
    let Some(d) = &i.dicom else {
        line("decodes", format!("no: {}", i.reason.as_deref().unwrap_or("unknown")));
        return out;
    };
    let (rows, columns) = (i.rows.unwrap_or(0), i.columns.unwrap_or(0));
    line("decodes", format!("yes, {rows} x {columns} pixels"));
    line("transfer syntax", d.transfer_syntax.clone());
    line("modality", d.modality.clone().unwrap_or_else(|| "(none)".into()));
    line("photometric", format!("{} ({} sample(s) per pixel)", d.photometric, d.samples_per_pixel));
    line("bits", format!("{} stored of {} allocated", i.bits_stored.unwrap_or(0), d.bits_allocated));
    line("frames", d.frames.to_string());
    line(
        "rescale",
        match d.rescale {
            Some([slope, intercept]) => format!("slope {slope}, intercept {intercept}"),
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
    out
}
