//! `radrun dicom slices`: DICOM series to the PNG slices radrun reads; `radrun dicom
//! series`: DICOM series to NIfTI volumes; `radrun dicom inspect` is `radrun inspect`
//! (the `inspect` command).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::FileKind;
use radrun_data::decode::{DecodeOptions, DicomInfo};
use radrun_data::volume_settings::DEFAULT_MAX_VOXELS;
use radrun_data::{nifti, series_volume};

use crate::cli::DicomCommand;
use crate::error::RadrunError;
use crate::store::WriteError;

pub fn dicom(command: DicomCommand) -> Result<(), RadrunError> {
    match command {
        DicomCommand::Inspect { files, json } => super::inspect::inspect(&files, json),
        DicomCommand::Slices { src, dst, window, format, max_thickness, min_slices, axial_only } => {
            let filters = Filters { max_thickness, min_slices, axial_only };
            slices(&src, &dst, &window, &format, &filters)
        }
        DicomCommand::Series { src, dst } => series(&src, &dst),
    }
}

/// `radrun dicom series`: each series under `src` as one NIfTI volume under `dst` (see
/// the command's help), with `series.csv`.
fn series(src: &Path, dst: &Path) -> Result<(), RadrunError> {
    if !src.is_dir() {
        return Err(super::usage_error(src, "is not a folder of DICOM files".into()));
    }
    let (series, unreadable) = group_series(src);
    let mut used_names: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let (mut rows, mut refused) = (Vec::new(), 0);
    for ((folder, _), sources) in series {
        let relative = folder.strip_prefix(src).unwrap_or(&folder);
        let relative = if relative.as_os_str().is_empty() { Path::new("series") } else { relative };
        let count = used_names.entry(relative.to_path_buf()).or_default();
        *count += 1;
        let name = match *count {
            1 => format!("{}.nii.gz", relative.display()),
            n => format!("{}_series{n}.nii.gz", relative.display()),
        };
        let source = radrun_data::paths::slash_path(relative);
        match series_volume::read_series(&sources, DEFAULT_MAX_VOXELS) {
            Ok(read) => {
                let out = dst.join(&name);
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| WriteError { path: parent.to_path_buf(), source: e })?;
                }
                crate::store::write_atomic(&out, &nifti::encode(&read.volume))?;
                let v = &read.volume;
                let spacing = v.spacing().map(|s| format!("{s:.4}")).join(" x ");
                let shape = v.shape.map(|s| s.to_string()).join(" x ");
                rows.push(vec![
                    name,
                    source,
                    read.slices.len().to_string(),
                    shape,
                    spacing,
                    v.axis_codes(),
                    String::new(),
                ]);
            }
            Err(e) => {
                refused += 1;
                let reason = match e {
                    series_volume::SeriesError::Geometry { reason, .. } => reason,
                    other => other.to_string(),
                };
                rows.push(vec![
                    String::new(),
                    source,
                    sources.len().to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                    reason,
                ]);
            }
        }
    }
    let header = ["nifti", "source", "slices", "shape", "spacing_mm", "orientation", "refused"].map(String::from);
    crate::store::write_csv(&dst.join("series.csv"), &header, &rows)?;
    let written = rows.len() - refused;
    println!("{written} volume(s) written to {} (list: {})", dst.display(), dst.join("series.csv").display());
    for row in rows.iter().filter(|r| r[0].is_empty()) {
        println!("refused {}: {}", row[1], row[6]);
    }
    for error in &unreadable {
        eprintln!("error: {error}");
    }
    match (refused, unreadable.len()) {
        (0, 0) => Ok(()),
        (refused, unreadable) => Err(RadrunError::SeriesRefused { refused, unreadable }),
    }
}

/// A series' files by its folder and SeriesInstanceUID.
type SeriesFiles = BTreeMap<(PathBuf, String), Vec<PathBuf>>;

/// The DICOM files under `src` grouped by folder and SeriesInstanceUID (a file without
/// one is a series of its own), from their headers; and the files whose header cannot be
/// read, with why. Each series' pixels are then decoded once, by `read_series`.
fn group_series(src: &Path) -> (SeriesFiles, Vec<String>) {
    let mut files = Vec::new();
    walk(src, &mut files);
    files.retain(|f| FileKind::of(f) == Some(FileKind::Dicom));
    let (mut series, mut unreadable) = (SeriesFiles::new(), Vec::new());
    for file in files {
        match radrun_data::decode::series_uid(&file) {
            Ok(uid) => {
                let folder = file.parent().unwrap_or(src).to_path_buf();
                let uid = uid.unwrap_or_else(|| radrun_data::paths::path_text(&file));
                series.entry((folder, uid)).or_default().push(file);
            }
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    (series, unreadable)
}

/// The tutorial converter's filters, as options.
struct Filters {
    max_thickness: Option<f64>,
    min_slices: usize,
    axial_only: bool,
}

/// One decoded slice on its way to a PNG.
struct Slice {
    source: PathBuf,
    image: radrun_data::GrayImage,
    dicom: DicomInfo,
}

fn slices(src: &Path, dst: &Path, window: &str, format: &str, filters: &Filters) -> Result<(), RadrunError> {
    let usage = |message: String| super::usage_error(src, message);
    if !src.is_dir() {
        return Err(usage("is not a folder of DICOM files".into()));
    }
    let sixteen = match format {
        "png16" => true,
        "png8" => false,
        other => return Err(usage(format!("--format {other:?}: expected png16 or png8"))),
    };
    let window = parse_window(window).map_err(usage)?;
    let options = DecodeOptions { windows: radrun_data::Windows::one(window), ..DecodeOptions::default() };
    let Decoded { series, unreadable, files: decoded_files } = decode_all(src, &options);
    let mut rows = Vec::new();
    let mut left_out = Vec::new();
    let mut used_folders = BTreeMap::<PathBuf, usize>::new();
    for ((folder, _), slices) in series {
        let relative = folder.strip_prefix(src).unwrap_or(&folder).to_path_buf();
        match filtered_out(&slices, filters) {
            Some(why) => left_out.push(format!("{}: {why}", radrun_data::paths::path_text(&relative))),
            None => rows.extend(write_series(slices, &relative, dst, &mut used_folders, sixteen)?),
        }
    }
    let header: Vec<String> =
        ["png", "source", "slice", "position_mm", "window_center", "window_width"].map(String::from).to_vec();
    crate::store::write_csv(&dst.join("slices.csv"), &header, &rows)?;
    println!("{} slice(s) written to {} (list: {})", rows.len(), dst.display(), dst.join("slices.csv").display());
    for why in &left_out {
        println!("left out {why}");
    }
    for error in &unreadable {
        eprintln!("error: {error}");
    }
    match unreadable.len() {
        0 => Ok(()),
        n => Err(RadrunError::FilesUnreadable { unreadable: n, total: n + decoded_files }),
    }
}

/// The DICOM files under a folder, decoded and grouped by folder and SeriesInstanceUID.
struct Decoded {
    series: BTreeMap<(PathBuf, String), Vec<Slice>>,
    /// Why each file that did not decode did not.
    unreadable: Vec<String>,
    /// Files decoded.
    files: usize,
}

/// Every DICOM file under `src`, decoded with `options`, grouped by folder and
/// SeriesInstanceUID (a file without one is a series of its own).
fn decode_all(src: &Path, options: &DecodeOptions) -> Decoded {
    let mut files = Vec::new();
    walk(src, &mut files);
    files.retain(|f| FileKind::of(f) == Some(FileKind::Dicom));
    let mut decoded = Decoded { series: BTreeMap::new(), unreadable: Vec::new(), files: 0 };
    for file in files {
        match radrun_data::decode::decode(&file, options) {
            Ok((image, info)) => {
                decoded.files += 1;
                let dicom = info.dicom.expect("a DICOM file has DICOM facts");
                let folder = file.parent().unwrap_or(src).to_path_buf();
                let uid = dicom.series_uid.clone().unwrap_or_else(|| radrun_data::paths::path_text(&file));
                decoded.series.entry((folder, uid)).or_default().push(Slice { source: file, image, dicom });
            }
            Err(e) => decoded.unreadable.push(e.to_string()),
        }
    }
    decoded
}

/// Writes a series' slices, in order along the slice normal, as numbered PNGs into the
/// folder under `dst` of its folder `relative` (a second series of one folder gets
/// `<folder>_series2`, ...; `used_folders` counts them); the slices.csv rows of them.
fn write_series(
    mut slices: Vec<Slice>,
    relative: &Path,
    dst: &Path,
    used_folders: &mut BTreeMap<PathBuf, usize>,
    sixteen: bool,
) -> Result<Vec<Vec<String>>, RadrunError> {
    slices.sort_by(|a, b| {
        let key = |s: &Slice| (radrun_data::series::position_along_normal(&s.dicom), s.dicom.instance_number);
        radrun_data::series::slice_ordering(key(a), key(b)).then_with(|| a.source.cmp(&b.source))
    });
    // a second series in the same folder gets its own folder: <folder>_series2, ...
    let count = used_folders.entry(relative.to_path_buf()).or_default();
    *count += 1;
    let out_folder = match *count {
        1 => dst.join(relative),
        n => dst.join(format!("{}_series{n}", relative.display())),
    };
    std::fs::create_dir_all(&out_folder).map_err(|source| WriteError { path: out_folder.clone(), source })?;
    let mut rows = Vec::new();
    for (index, slice) in slices.iter().enumerate() {
        let out = out_folder.join(format!("{index:04}.png"));
        write_png(&out, &slice.image, sixteen)?;
        let position = radrun_data::series::position_along_normal(&slice.dicom);
        rows.push(vec![
            radrun_data::paths::path_text(out.strip_prefix(dst).unwrap_or(&out)),
            radrun_data::paths::path_text(&slice.source),
            index.to_string(),
            position.map_or(String::new(), |p| format!("{p}")),
            format!("{}", slice.dicom.window.0),
            format!("{}", slice.dicom.window.1),
        ]);
    }
    Ok(rows)
}

/// Why a series is left out, if it is.
fn filtered_out(slices: &[Slice], filters: &Filters) -> Option<String> {
    if slices.len() < filters.min_slices {
        return Some(format!("{} slice(s), fewer than --min-slices {}", slices.len(), filters.min_slices));
    }
    if let Some(max) = filters.max_thickness
        && let Some(thickness) = slices[0].dicom.slice_thickness_mm
        && thickness > max
    {
        return Some(format!("slices {thickness} mm thick, above --max-thickness {max}"));
    }
    if filters.axial_only {
        let positions: Vec<[f64; 3]> = slices.iter().filter_map(|s| s.dicom.position_mm).collect();
        let moves = |axis: usize| positions.windows(2).any(|w| (w[0][axis] - w[1][axis]).abs() > 1e-3);
        if moves(0) || moves(1) {
            return Some("not axial (x or y of ImagePositionPatient changes), --axial-only".into());
        }
    }
    None
}

/// A window as in a recipe, or CENTER,WIDTH.
fn parse_window(text: &str) -> Result<radrun_data::Window, String> {
    if let Some((center, width)) = text.split_once(',') {
        let number = |v: &str| v.trim().parse::<f64>().map_err(|_| format!("--window {text:?}: {v:?} is not a number"));
        let (center, width) = (number(center)?, number(width)?);
        if width <= 0.0 {
            return Err(format!("--window {text:?}: the width must be positive"));
        }
        return Ok(radrun_data::Window::Explicit { center, width });
    }
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| format!("--window: {e}"))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let linked = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if path.is_dir() && !linked {
            walk(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

/// The first plane as a gray PNG, written atomically.
fn write_png(path: &Path, image: &radrun_data::GrayImage, sixteen: bool) -> Result<(), RadrunError> {
    let plane = &image.pixels[..image.height * image.width];
    let (w, h) = (image.width as u32, image.height as u32);
    if sixteen {
        let values = plane.iter().map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16).collect();
        let image = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(w, h, values).expect("a whole plane");
        crate::store::write_png(path, &image)?;
    } else {
        let values = plane.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        crate::store::write_png(path, &image::GrayImage::from_raw(w, h, values).expect("a whole plane"))?;
    }
    Ok(())
}
