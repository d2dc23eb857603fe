//! TensorBoard event files (`[track] tensorboard = true`): a run's epochs as scalars and
//! its test results as scalars and images, in `<run>/tensorboard/`, which
//! `tensorboard --logdir runs/<recipe>` shows one run per folder.
//!
//! No maintained crate writes them (tensorboard-rs is inactive and pins protobuf 2), so
//! this is the small writer TensorFlow's `EventFileWriter` is: each record is its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the serialized `Event`
//! protobuf (prost), and the masked CRC-32C of it. The messages below are the fields of
//! tensorflow/core/util/event.proto and framework/summary.proto that radrun writes, with
//! their field numbers. The tests read the files back with TensorBoard's own
//! `EventAccumulator`.
//!
//! Each process that trains a run opens a new file. A resumed run starts its file with
//! a `SessionLog.START` event at the first epoch it will record: TensorBoard then drops
//! the points the interrupted attempt wrote from that epoch on (its "purge orphaned
//! data"), so an epoch trained twice shows once, as the run's metrics.csv has it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use prost::Message;

use crate::store::io::png_bytes;
use crate::store::{WriteError, host_name};

/// The folder of a run's event files.
pub const FOLDER: &str = "tensorboard";

/// Grad-CAM images of the gallery shown in TensorBoard (all are in `gallery/`).
const GALLERY_IMAGES: usize = 8;

/// Side of a confusion-matrix cell in its image, in pixels.
const CELL: u32 = 32;

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    /// 1: START.
    #[prost(int32, tag = "1")]
    status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Content", tags = "2, 4")]
    content: Option<Content>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Content {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    /// 1 grey, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

/// A PNG image for [`EventFile::images`].
pub struct Png {
    pub tag: String,
    pub bytes: Vec<u8>,
    pub height: u32,
    pub width: u32,
    pub channels: u8,
}

/// One event file, open for appending; every write reaches the disk before it returns
/// (a killed run leaves whole records).
pub struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// A new event file in `<run>/tensorboard/` (made if missing), its first record the
    /// file version; with `session_from`, a session start at that step: the first epoch
    /// this process will record.
    pub fn create(run_dir: &Path, session_from: Option<u32>) -> Result<Self, WriteError> {
        let dir = run_dir.join(FOLDER);
        let err = |source| WriteError { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let started = jiff::Timestamp::now();
        // TensorFlow's name: `tfevents` is what TensorBoard looks for, and it reads the
        // files in the order of their names; the process id and a count keep files of
        // one second apart (training's, then the results')
        static OPENED: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "events.out.tfevents.{}.{}.{}.{}",
            started.as_second(),
            host_name(),
            std::process::id(),
            OPENED.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = File::options().create_new(true).append(true).open(&path).map_err(err)?;
        let mut events = Self { path, file };
        events.write(0, What::FileVersion("brain.Event:2".into()))?;
        if let Some(step) = session_from {
            events.write(i64::from(step), What::SessionLog(SessionLog { status: 1 }))?;
        }
        Ok(events)
    }

    /// Scalars at one step (an epoch), each under its tag (`train/loss`); a value that
    /// is not finite is left out.
    pub fn scalars(&mut self, step: u32, values: &[(String, f64)]) -> Result<(), WriteError> {
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| Value { tag: tag.clone(), content: Some(Content::SimpleValue(*v as f32)) })
            .collect();
        self.write(i64::from(step), What::Summary(Summary { value }))
    }

    /// PNG images at one step, each under its tag.
    pub fn images(&mut self, step: u32, images: Vec<Png>) -> Result<(), WriteError> {
        let value = images
            .into_iter()
            .map(|png| Value {
                tag: png.tag,
                content: Some(Content::Image(Image {
                    height: png.height as i32,
                    width: png.width as i32,
                    colorspace: i32::from(png.channels),
                    encoded_image_string: png.bytes,
                })),
            })
            .collect();
        self.write(i64::from(step), What::Summary(Summary { value }))
    }

    fn write(&mut self, step: i64, what: What) -> Result<(), WriteError> {
        let wall_time = jiff::Timestamp::now().as_microsecond() as f64 / 1e6;
        let data = Event { wall_time, step, what: Some(what) }.encode_to_vec();
        let record = record(&data);
        let written = self.file.write_all(&record).and_then(|()| self.file.sync_data());
        written.map_err(|source| WriteError { path: self.path.clone(), source })
    }
}

/// A finished run's test results at `step` (the epoch whose weights were evaluated), in
/// a file of their own: the headline test metrics as `test/<metric>` scalars, the
/// confusion matrix as an image (rows the true class, columns the predicted; a cell's
/// colour is its share of the row on the viridis scale: the counts are in
/// confusion_matrix.csv and the report) and the gallery's first Grad-CAM images.
pub fn write_results(run_dir: &Path, step: u32, test: &BTreeMap<String, f64>) -> Result<(), WriteError> {
    let mut events = EventFile::create(run_dir, None)?;
    let scalars: Vec<(String, f64)> = test.iter().map(|(metric, v)| (format!("test/{metric}"), *v)).collect();
    events.scalars(step, &scalars)?;
    let images: Vec<Png> = confusion_image(&run_dir.join("confusion_matrix.csv"))
        .into_iter()
        .chain(gallery_images(&run_dir.join("gallery")))
        .collect();
    if images.is_empty() { Ok(()) } else { events.images(step, images) }
}

/// confusion_matrix.csv drawn as cells; None when the run has none.
fn confusion_image(path: &Path) -> Option<Png> {
    let mut reader = csv::Reader::from_path(path).ok()?;
    let counts: Vec<Vec<f64>> = reader
        .records()
        .filter_map(Result::ok)
        .map(|row| row.iter().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect())
        .collect();
    let n = u32::try_from(counts.len()).ok().filter(|&n| n > 0)?;
    let image = image::RgbImage::from_fn(n * CELL, n * CELL, |x, y| {
        let row = &counts[(y / CELL) as usize];
        let total: f64 = row.iter().sum();
        let count = row.get((x / CELL) as usize).copied().unwrap_or(0.0);
        let colour = ViridisRGB.get_color(if total > 0.0 { (count / total) as f32 } else { 0.0 });
        image::Rgb([colour.0, colour.1, colour.2])
    });
    Some(Png {
        tag: "test/confusion_matrix".into(),
        bytes: png_bytes(&image).ok()?,
        height: n * CELL,
        width: n * CELL,
        channels: 3,
    })
}

/// The gallery's first Grad-CAM overlays (`gallery/000_gradcam.png`...), in order.
fn gallery_images(folder: &Path) -> Vec<Png> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_gradcam.png")))
        .collect();
    paths.sort();
    paths
        .iter()
        .take(GALLERY_IMAGES)
        .filter_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            let decoded = image::load_from_memory(&bytes).ok()?;
            let number = path.file_name()?.to_string_lossy().trim_end_matches("_gradcam.png").to_string();
            Some(Png {
                tag: format!("test/gallery/{number}"),
                height: decoded.height(),
                width: decoded.width(),
                channels: decoded.color().channel_count(),
                bytes,
            })
        })
        .collect()
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// TensorFlow's masked CRC-32C (Castagnoli): rotated right by 15 bits plus a constant,
/// so that a CRC of data holding CRCs is not itself trivial.
fn masked_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_castagnolis_masked_as_tensorflow_does() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720's check value); masked by hand:
        // rotate right 15 gives 0x2507C60D, plus 0xA282EAD8 gives 0xC78AB0E5
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn a_record_frames_its_data_with_length_and_checksums() {
        let framed = record(b"abc");
        assert_eq!(framed.len(), 8 + 4 + 3 + 4);
        assert_eq!(&framed[..8], &3u64.to_le_bytes());
        assert_eq!(&framed[8..12], &masked_crc(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&framed[12..15], b"abc");
        assert_eq!(&framed[15..], &masked_crc(b"abc").to_le_bytes());
    }
}
