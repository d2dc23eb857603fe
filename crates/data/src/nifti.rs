//! NIfTI-1 and NIfTI-2 volumes, `.nii` and `.nii.gz`, read as nibabel reads them.
//!
//! - **Header.** NIfTI-1 headers are parsed by the `nifti` crate (both byte orders);
//!   NIfTI-2 headers (540 bytes, 64-bit fields), which it does not read, here. Either is
//!   recognised by its size field, gzip by its first bytes, not by the file's name.
//! - **Voxels.** Read here, not by the crate: its reader takes the data from byte 352
//!   whatever `vox_offset` says when a file has no extension flag, and allocates what the
//!   header declares. Here the declared size is checked against `max_voxels` before a
//!   byte is inflated, the data is read from `vox_offset` with a bounded reader, and a
//!   file that ends early is an error, not zeros.
//! - **Values.** Every integer and float type a scanner writes (u8, i8, i16, u16, i32,
//!   u32, i64, u64, f32, f64), scaled as nibabel's `get_fdata` does: `raw * scl_slope +
//!   scl_inter` in f64, unless the slope is 0 or not finite (then neither applies), then
//!   stored as f32. RGB, complex and 128-bit types are refused, and so is any NaN voxel
//!   unless the options say to make it 0.
//! - **Geometry.** The affine nibabel chooses (`get_best_affine`): the sform when its code
//!   is above 0, else the qform (quaternion, `qfac` from `pixdim[0]`, which is taken as 1
//!   unless it is -1), else the base affine from `pixdim` (x flipped, centred). Both
//!   codes are reported. A zero, negative or non-finite spatial `pixdim` is refused where
//!   nibabel would quietly make it 1 or positive: such a volume cannot be resampled.
//! - **Writing** ([`encode`]): NIfTI-1, gzip, the affine as the sform and, its nearest
//!   rotation, as the qform (both code 1, scanner), int16 when every value is a whole
//!   number in its range (modality values, labels), else float32; no scaling.
//! - **Shape.** Three dimensions (fewer are padded with 1, as nibabel does); a fourth
//!   becomes channels only when asked (`data.channels_from = "last_axis"`); more is refused.

use std::io::{BufReader, Cursor, Read, Write};
use std::path::Path;

use ::nifti::header::NiftiHeader;

use crate::decoded::DecodeError;
use crate::volume::{Affine, Volume, determinant, nearest_rotation};

/// How a NIfTI file is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NiftiOptions {
    /// The most voxels (all channels) a file may declare (`data.max_voxels`).
    pub max_voxels: u64,
    /// A fourth axis is read as channels (`data.channels_from = "last_axis"`); otherwise a
    /// 4D file with more than one volume is refused.
    pub channels_from_last_axis: bool,
    /// NaN voxels become 0 (`data.nan = "zero"`); otherwise they are refused.
    pub nan_to_zero: bool,
}

/// What a NIfTI header says, from either version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NiftiInfo {
    /// 1 or 2.
    pub version: u8,
    pub big_endian: bool,
    pub gzipped: bool,
    /// `dim[1..=dim[0]]`.
    pub dims: Vec<i64>,
    /// The datatype's name (`int16`, `float32`, ...).
    pub datatype: String,
    pub pixdim: [f64; 8],
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    /// Which of them the affine came from: "sform", "qform" or "pixdim".
    pub affine_from: &'static str,
    #[serde(skip)]
    code: i16,
    #[serde(skip)]
    vox_offset: f64,
    #[serde(skip)]
    quatern: [f64; 6],
    #[serde(skip)]
    srow: [[f64; 4]; 3],
}

/// A volume and the header it was read with.
#[derive(Debug, Clone)]
pub struct NiftiVolume {
    pub volume: Volume,
    pub info: NiftiInfo,
    /// NaN voxels made 0 (under `nan_to_zero`).
    pub nan_voxels: usize,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether a file is NIfTI by its name (`.nii`, `.nii.gz`).
pub fn is_nifti(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Reads a NIfTI file's header only (what `radrun inspect` shows before decoding).
pub fn read_header(path: &Path) -> Result<NiftiInfo, DecodeError> {
    let file = std::fs::File::open(path).map_err(|e| DecodeError::with_cause(path, &e))?;
    let (mut reader, gzipped) = inflated(path, file)?;
    let (info, _) = header(path, &mut reader, gzipped)?;
    Ok(info)
}

/// Reads a NIfTI file: header, voxels and affine (see the module's documentation).
pub fn read(path: &Path, options: &NiftiOptions) -> Result<NiftiVolume, DecodeError> {
    let file = std::fs::File::open(path).map_err(|e| DecodeError::with_cause(path, &e))?;
    read_from(path, file, options)
}

/// Reads a NIfTI file's bytes from `source` (`path` names it in errors).
pub fn read_from(path: &Path, source: impl Read + 'static, options: &NiftiOptions) -> Result<NiftiVolume, DecodeError> {
    let (mut reader, gzipped) = inflated(path, source)?;
    let (info, header_len) = header(path, &mut reader, gzipped)?;
    let layout = Layout::of(&info, options).map_err(|reason| DecodeError::new(path, reason))?;
    let skip = info.vox_offset as u64 - header_len;
    let copied = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
        .map_err(|e| DecodeError::new(path, format!("cannot read the bytes before its voxels ({e})")))?;
    let bytes = layout.voxels * layout.value_size;
    let mut data = Vec::new();
    let read = (&mut reader).take(bytes).read_to_end(&mut data);
    let read =
        read.map_err(|e| DecodeError::new(path, format!("cannot read its voxels ({e}); the file is damaged")))?;
    if copied < skip || (read as u64) < bytes {
        let at = header_len + copied + read as u64;
        return Err(DecodeError::new(
            path,
            format!(
                "the file ends at byte {at}{}, before its last voxel (its header declares {} voxels of {} from byte \
                 {}): it is cut or damaged; copy it again",
                if gzipped { " of its decompressed data" } else { "" },
                layout.voxels,
                info.datatype,
                info.vox_offset
            ),
        ));
    }
    let (voxels, nan_voxels) =
        values(&info, &layout, &data, options).map_err(|reason| DecodeError::new(path, reason))?;
    let volume = Volume { voxels, shape: layout.shape, channels: layout.channels, affine: affine(&info, layout.shape) };
    Ok(NiftiVolume { volume, info, nan_voxels })
}

/// The file's bytes, inflated when it starts as gzip does; and whether it did.
fn inflated(path: &Path, source: impl Read + 'static) -> Result<(Box<dyn Read>, bool), DecodeError> {
    let mut first = Vec::with_capacity(2);
    let mut file = BufReader::new(source);
    (&mut file).take(2).read_to_end(&mut first).map_err(|e| DecodeError::with_cause(path, &e))?;
    let gzipped = first == GZIP_MAGIC;
    let rest = Cursor::new(first).chain(file);
    Ok(if gzipped { (Box::new(flate2::read::MultiGzDecoder::new(rest)), true) } else { (Box::new(rest), false) })
}

/// Parses the header at the start of `reader`; returns it and its length in bytes.
fn header(path: &Path, reader: &mut dyn Read, gzipped: bool) -> Result<(NiftiInfo, u64), DecodeError> {
    let not_nifti = |what: String| {
        DecodeError::new(path, format!("{what}: not a NIfTI-1 or NIfTI-2 file (or one cut in its header)"))
    };
    let mut start = [0u8; 4];
    reader.read_exact(&mut start).map_err(|e| not_nifti(format!("cannot read its first 4 bytes ({e})")))?;
    let size = |big: bool| if big { i32::from_be_bytes(start) } else { i32::from_le_bytes(start) };
    let (version, big_endian) = match (size(false), size(true)) {
        (348, _) => (1, false),
        (_, 348) => (1, true),
        (540, _) => (2, false),
        (_, 540) => (2, true),
        (found, _) => return Err(not_nifti(format!("its header size is {found}, not 348 or 540"))),
    };
    let length = if version == 1 { 348 } else { 540 };
    let mut bytes = start.to_vec();
    bytes.resize(length, 0);
    reader.read_exact(&mut bytes[4..]).map_err(|e| not_nifti(format!("its header is cut ({e})")))?;
    let magic = &bytes[if version == 1 { 344..348 } else { 4..8 }];
    if magic == b"ni1\0" || magic == b"ni2\0" {
        return Err(DecodeError::new(
            path,
            "it is the header of a two-file NIfTI (.hdr with its voxels in an .img file); radrun reads single-file \
             .nii and .nii.gz: convert the pair (e.g. nibabel's `nib.save(nib.load(hdr), 'x.nii.gz')`)",
        ));
    }
    let info = if version == 1 {
        nifti1(&bytes, gzipped).map_err(not_nifti)?
    } else {
        nifti2(&bytes, big_endian, gzipped).map_err(not_nifti)?
    };
    Ok((info, length as u64))
}

fn nifti1(bytes: &[u8], gzipped: bool) -> Result<NiftiInfo, String> {
    let h = NiftiHeader::from_reader(bytes).map_err(|e| format!("its NIfTI-1 header cannot be read ({e})"))?;
    // `dim` is signed in the standard; the crate reads it unsigned
    let ndim = (h.dim[0] as i16).clamp(0, 7) as usize;
    let f = |v: f32| f64::from(v);
    Ok(NiftiInfo {
        version: 1,
        big_endian: h.endianness == ::nifti::Endianness::Big,
        gzipped,
        dims: h.dim[1..=ndim].iter().map(|&d| i64::from(d as i16)).collect(),
        datatype: datatype_name(h.datatype),
        pixdim: h.pixdim.map(f),
        scl_slope: f(h.scl_slope),
        scl_inter: f(h.scl_inter),
        qform_code: i32::from(h.qform_code),
        sform_code: i32::from(h.sform_code),
        affine_from: affine_source(i32::from(h.sform_code), i32::from(h.qform_code)),
        code: h.datatype,
        vox_offset: f(h.vox_offset),
        quatern: [h.quatern_b, h.quatern_c, h.quatern_d, h.quatern_x, h.quatern_y, h.quatern_z].map(f),
        srow: [h.srow_x.map(f), h.srow_y.map(f), h.srow_z.map(f)],
    })
}

/// The NIfTI-2 header (`nifti2.h`): the NIfTI-1 fields at 64 bits, rearranged.
fn nifti2(b: &[u8], big: bool, gzipped: bool) -> Result<NiftiInfo, String> {
    if &b[4..8] != b"n+2\0" && &b[4..8] != b"ni2\0" {
        return Err("its NIfTI-2 magic is missing".into());
    }
    let word = |at: usize, n: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(&b[at..at + n]);
        if big {
            w[..n].reverse();
        }
        w
    };
    let i16_at = |at| i16::from_le_bytes(word(at, 2)[..2].try_into().expect("2 bytes"));
    let i32_at = |at| i32::from_le_bytes(word(at, 4)[..4].try_into().expect("4 bytes"));
    let i64_at = |at| i64::from_le_bytes(word(at, 8));
    let f64_at = |at| f64::from_le_bytes(word(at, 8));
    let dim: [i64; 8] = std::array::from_fn(|i| i64_at(16 + 8 * i));
    let ndim = dim[0].clamp(0, 7) as usize;
    let code = i16_at(12);
    let (qform_code, sform_code) = (i32_at(344), i32_at(348));
    Ok(NiftiInfo {
        version: 2,
        big_endian: big,
        gzipped,
        dims: dim[1..=ndim].to_vec(),
        datatype: datatype_name(code),
        pixdim: std::array::from_fn(|i| f64_at(104 + 8 * i)),
        scl_slope: f64_at(176),
        scl_inter: f64_at(184),
        qform_code,
        sform_code,
        affine_from: affine_source(sform_code, qform_code),
        code,
        vox_offset: i64_at(168) as f64,
        quatern: std::array::from_fn(|i| f64_at(352 + 8 * i)),
        srow: std::array::from_fn(|r| std::array::from_fn(|c| f64_at(400 + 32 * r + 8 * c))),
    })
}

fn affine_source(sform_code: i32, qform_code: i32) -> &'static str {
    if sform_code > 0 {
        "sform"
    } else if qform_code > 0 {
        "qform"
    } else {
        "pixdim"
    }
}

/// NIfTI's datatype codes (`nifti1.h`), by name.
const DATATYPES: [(i16, &str); 16] = [
    (2, "uint8"),
    (4, "int16"),
    (8, "int32"),
    (16, "float32"),
    (32, "complex64"),
    (64, "float64"),
    (128, "rgb24"),
    (256, "int8"),
    (512, "uint16"),
    (768, "uint32"),
    (1024, "int64"),
    (1280, "uint64"),
    (1536, "float128"),
    (1792, "complex128"),
    (2048, "complex256"),
    (2304, "rgba32"),
];

fn datatype_name(code: i16) -> String {
    match DATATYPES.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => (*name).to_string(),
        None => format!("unknown datatype {code}"),
    }
}

/// Reads one stored value as f64 from its bytes (`true`: the file is big-endian).
type ValueReader = fn(&[u8], bool) -> f64;

/// The bytes one value of a datatype takes and how to read it, for the types radrun reads.
fn value_reader(code: i16) -> Result<(u64, ValueReader), String> {
    Ok(match code {
        2 => (1, |b, _| f64::from(b[0])),
        256 => (1, |b, _| f64::from(b[0] as i8)),
        4 => (2, |b, big| f64::from(i16::from_le_bytes(ordered(b, big)))),
        512 => (2, |b, big| f64::from(u16::from_le_bytes(ordered(b, big)))),
        8 => (4, |b, big| f64::from(i32::from_le_bytes(ordered(b, big)))),
        768 => (4, |b, big| f64::from(u32::from_le_bytes(ordered(b, big)))),
        16 => (4, |b, big| f64::from(f32::from_le_bytes(ordered(b, big)))),
        1024 => (8, |b, big| i64::from_le_bytes(ordered(b, big)) as f64),
        1280 => (8, |b, big| u64::from_le_bytes(ordered(b, big)) as f64),
        64 => (8, |b, big| f64::from_le_bytes(ordered(b, big))),
        128 | 2304 => {
            return Err("its voxels are RGB colours; radrun reads grey-level volumes: convert it to one channel \
                        per colour (a 4D file read with data.channels_from = \"last_axis\")"
                .into());
        }
        32 | 1536 | 1792 | 2048 => {
            return Err(format!(
                "its datatype is {}; radrun reads integer and real voxels (uint8 to uint64, int8 to int64, float32, \
                 float64): convert it (for complex data, to its magnitude)",
                datatype_name(code)
            ));
        }
        _ => {
            return Err(format!(
                "its datatype code {code} is not one NIfTI defines; the header is damaged or not NIfTI"
            ));
        }
    })
}

/// Shape, channels and sizes of the voxel data, checked.
struct Layout {
    shape: [usize; 3],
    channels: usize,
    voxels: u64,
    value_size: u64,
    reader: ValueReader,
}

impl Layout {
    fn of(info: &NiftiInfo, options: &NiftiOptions) -> Result<Layout, String> {
        let dims = &info.dims;
        if dims.is_empty() || dims.iter().any(|&d| d < 1) {
            return Err(format!(
                "its header declares dimensions {dims:?}: a dimension of zero or below (or none); the header is \
                 damaged"
            ));
        }
        let extra: Vec<i64> = dims.iter().skip(4).copied().collect();
        if extra.iter().any(|&d| d > 1) {
            return Err(format!(
                "it has {} dimensions ({dims:?}); radrun reads 3D volumes, and 4D ones as channels",
                dims.len()
            ));
        }
        let at = |i: usize| dims.get(i).copied().unwrap_or(1) as u64;
        let channels = at(3);
        if channels > 1 && !options.channels_from_last_axis {
            return Err(format!(
                "it is 4D ({} x {} x {} x {channels}); set data.channels_from = \"last_axis\" to read its fourth \
                 axis as channels (e.g. MR sequences), or give one 3D file per case",
                at(0),
                at(1),
                at(2)
            ));
        }
        let voxels = (0..4).try_fold(1u64, |n, i| n.checked_mul(at(i))).unwrap_or(u64::MAX);
        if voxels > options.max_voxels {
            return Err(format!(
                "its header declares {voxels} voxels ({dims:?}), above data.max_voxels = {}; raise it if the \
                 volume is real. Nothing was decompressed",
                options.max_voxels
            ));
        }
        for (axis, &spacing) in info.pixdim[1..=3].iter().enumerate() {
            if !(spacing.is_finite() && spacing > 0.0) {
                return Err(format!(
                    "its voxel size along axis {} (pixdim[{}]) is {spacing}; a volume needs positive, finite voxel \
                     sizes in mm: the header is damaged, or was written without them",
                    axis + 1,
                    axis + 1
                ));
            }
        }
        let header_end = if info.version == 1 { 352.0 } else { 544.0 };
        if !(info.vox_offset.is_finite() && info.vox_offset >= header_end) {
            return Err(format!(
                "its voxels are said to start at byte {} (vox_offset), inside its header (a single-file NIfTI-{} \
                 puts them at byte {header_end} or later); the header is damaged",
                info.vox_offset, info.version
            ));
        }
        let (value_size, reader) = value_reader(info.code)?;
        let shape = [at(0) as usize, at(1) as usize, at(2) as usize];
        Ok(Layout { shape, channels: channels as usize, voxels, value_size, reader })
    }
}

/// The voxels as f32 after nibabel's scaling, and how many NaN voxels became 0.
fn values(info: &NiftiInfo, layout: &Layout, data: &[u8], options: &NiftiOptions) -> Result<(Vec<f32>, usize), String> {
    let scaling = (info.scl_slope != 0.0 && info.scl_slope.is_finite()).then_some((info.scl_slope, info.scl_inter));
    if let Some((_, inter)) = scaling
        && !inter.is_finite()
    {
        return Err(format!("its scl_inter is {inter}: the header is damaged"));
    }
    let (big, raw) = (info.big_endian, layout.reader);
    let mut nan = 0;
    let voxels = data
        .chunks_exact(layout.value_size as usize)
        .map(|b| {
            let v = raw(b, big);
            let v = match scaling {
                Some((slope, inter)) => v * slope + inter,
                None => v,
            };
            if v.is_nan() {
                nan += 1;
                0.0
            } else {
                v as f32
            }
        })
        .collect();
    if nan > 0 && !options.nan_to_zero {
        return Err(format!(
            "{nan} of its voxels are NaN (not a number); set data.nan = \"zero\" to read them as 0, or fix the file"
        ));
    }
    Ok((voxels, nan))
}

/// `b`'s bytes in little-endian order (the file's are big-endian when `big`).
fn ordered<const N: usize>(b: &[u8], big: bool) -> [u8; N] {
    let mut out: [u8; N] = b[..N].try_into().expect("a value's bytes");
    if big {
        out.reverse();
    }
    out
}

/// The affine nibabel's `get_best_affine` gives (see the module's documentation).
fn affine(info: &NiftiInfo, shape: [usize; 3]) -> Affine {
    let last = [0.0, 0.0, 0.0, 1.0];
    match info.affine_from {
        "sform" => [info.srow[0], info.srow[1], info.srow[2], last],
        "qform" => {
            let [b, c, d, x, y, z] = info.quatern;
            // nibabel's fillpositive: w from the unit norm, 0 within 3 float32 epsilons
            let w2 = 1.0 - (b * b + c * c + d * d);
            let w = if w2.abs() < 3.0 * f64::from(f32::EPSILON) { 0.0 } else { w2.max(0.0).sqrt() };
            let r = rotation([w, b, c, d]);
            let qfac = if info.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
            let zooms = [info.pixdim[1], info.pixdim[2], info.pixdim[3] * qfac];
            let row = |i: usize, t: f64| [r[i][0] * zooms[0], r[i][1] * zooms[1], r[i][2] * zooms[2], t];
            [row(0, x), row(1, y), row(2, z), last]
        }
        _ => {
            // nibabel's shape_zoom_affine with x flipped: the array's centre at the origin
            let zooms = [-info.pixdim[1], info.pixdim[2], info.pixdim[3]];
            let t = |i: usize| -((shape[i] as f64 - 1.0) / 2.0) * zooms[i];
            [[zooms[0], 0.0, 0.0, t(0)], [0.0, zooms[1], 0.0, t(1)], [0.0, 0.0, zooms[2], t(2)], last]
        }
    }
}

/// nibabel's `quat2mat` of `[w, x, y, z]`.
fn rotation([w, x, y, z]: [f64; 4]) -> [[f64; 3]; 3] {
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [[1.0 - (yy + zz), xy - wz, xz + wy], [xy + wz, 1.0 - (xx + zz), yz - wx], [xz - wy, yz + wx, 1.0 - (xx + yy)]]
}

/// `volume` as a gzipped single-file NIfTI-1 (see the module's documentation).
pub fn encode(volume: &Volume) -> Vec<u8> {
    let whole = volume.voxels.iter().all(|&v| v.fract() == 0.0 && (-32768.0..=32767.0).contains(&v));
    let (code, bits): (i16, i16) = if whole { (4, 16) } else { (16, 32) };
    let mut header = vec![0u8; 352];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &348i32.to_le_bytes());
    let [nx, ny, nz] = volume.shape;
    let ndim: i16 = if volume.channels > 1 { 4 } else { 3 };
    let dims = [ndim, nx as i16, ny as i16, nz as i16, volume.channels as i16, 1, 1, 1];
    for (i, d) in dims.iter().enumerate() {
        put(40 + 2 * i, &d.to_le_bytes());
    }
    put(70, &code.to_le_bytes());
    put(72, &bits.to_le_bytes());
    let (rotation, qfac) = qform_rotation(volume);
    let spacing = volume.spacing();
    let pixdim = [qfac, spacing[0], spacing[1], spacing[2], 1.0, 1.0, 1.0, 1.0];
    for (i, p) in pixdim.iter().enumerate() {
        put(76 + 4 * i, &(*p as f32).to_le_bytes());
    }
    put(108, &352f32.to_le_bytes());
    put(112, &1f32.to_le_bytes()); // scl_slope 1, scl_inter 0: the values as they are
    put(123, &[2]); // xyzt_units: millimetres
    put(252, &1i16.to_le_bytes()); // qform_code: scanner
    put(254, &1i16.to_le_bytes()); // sform_code: scanner
    let [_, b, c, d] = quaternion(&rotation);
    let offset = [volume.affine[0][3], volume.affine[1][3], volume.affine[2][3]];
    for (i, q) in [b, c, d, offset[0], offset[1], offset[2]].iter().enumerate() {
        put(256 + 4 * i, &(*q as f32).to_le_bytes());
    }
    for (r, row) in volume.affine[..3].iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(280 + 16 * r + 4 * c, &(*v as f32).to_le_bytes());
        }
    }
    put(344, b"n+1\0");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut voxels = Vec::with_capacity(volume.voxels.len() * bits as usize / 8);
    for &v in &volume.voxels {
        if whole { voxels.extend((v as i16).to_le_bytes()) } else { voxels.extend(v.to_le_bytes()) }
    }
    encoder.write_all(&header).and_then(|()| encoder.write_all(&voxels)).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The qform's rotation and `qfac` for a volume: its directions' nearest rotation, the
/// third axis negated (qfac -1) when they are left-handed.
fn qform_rotation(volume: &Volume) -> ([[f64; 3]; 3], f64) {
    let mut rotation = nearest_rotation(volume.direction());
    if determinant(&rotation) < 0.0 {
        for row in &mut rotation {
            row[2] = -row[2];
        }
        return (rotation, -1.0);
    }
    (rotation, 1.0)
}

/// The unit quaternion `[a, b, c, d]` (a >= 0) of a rotation, as `nifti1_io`'s
/// `nifti_mat44_to_quatern` computes it.
fn quaternion(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, b, c, d) = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        (a, 0.25 * (r[2][1] - r[1][2]) / a, 0.25 * (r[0][2] - r[2][0]) / a, 0.25 * (r[1][0] - r[0][1]) / a)
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            (0.25 * (r[2][1] - r[1][2]) / b, b, 0.25 * (r[0][1] + r[1][0]) / b, 0.25 * (r[0][2] + r[2][0]) / b)
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            (0.25 * (r[0][2] - r[2][0]) / c, 0.25 * (r[0][1] + r[1][0]) / c, c, 0.25 * (r[1][2] + r[2][1]) / c)
        } else {
            let d = 0.5 * zd.sqrt();
            (0.25 * (r[1][0] - r[0][1]) / d, 0.25 * (r[0][2] + r[2][0]) / d, 0.25 * (r[1][2] + r[2][1]) / d, d)
        }
    };
    if a < 0.0 { [-a, -b, -c, -d] } else { [a, b, c, d] }
}
