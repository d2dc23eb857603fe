//! The image cache (`data.cache`): a dataset's decoded, resized images written once to
//! a file beside the runs, which every later run on the same files and `[data]` opens
//! instead of decoding, and from which batches read each image as they are made, so that
//! memory holds the batches, not the dataset.
//!
//! A cache file is named by two SHA-256 fingerprints: of the `[data]` keys that change
//! decoding (not `cache`, `split_seed`, `validation_fraction`, `allow_leakage`), and of
//! the files found (each path, size, modification and change times and inode, its
//! mask's, its label and group, the labels and group tables) with radrun's version and
//! the cache format. A changed,
//! added or removed file makes another name; the file it replaces (same `[data]`) is
//! deleted once the new one is written, unless a process still reads it. Concurrent
//! processes (`--jobs`, Slurm) take turns through a lock file: one decodes, the others
//! then open what it wrote.
//!
//! Layout: a 32-byte header (magic, offset and length of the contents, CRC-32 of
//! everything after the header), the images' levels and the masks, then the contents as
//! JSON (samples, where each one's levels are, what each file said, files skipped). A
//! file that is truncated, fails its checksum or cannot be parsed is rebuilt, never
//! trained on. The file is written under another name and renamed when whole. Masks are
//! read back into memory (one byte a pixel); images are read batch by batch.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::decode::ImageInfo;
use crate::discover::Layout;
use crate::discover::SplitFiles;
use crate::load::{Images, ImagesSource, SplitRead, SplitReads, decode_split};
use crate::pixels::{Packing, Pixels, StoredFile};
use crate::sample::{Origin, Sample, Target};
use crate::settings::{CacheMode, DataSettings, Series};
use crate::summary::SkippedFile;

const MAGIC: &[u8; 8] = b"RADRUNi1";
const HEADER: u64 = 32;

/// Where image cache files go, and how much memory a dataset may take before
/// `data.cache = "auto"` puts it on disk.
#[derive(Debug, Clone)]
pub struct CachePlace {
    pub dir: PathBuf,
    pub memory_budget: u64,
}

/// Bumped when what a cache file holds changes meaning (decoding, packing, layout);
/// 2: Enhanced multi-frame frames decoded with their functional groups, decoder notes.
const FORMAT: u32 = 2;

/// The `[data]` keys that do not change the decoded images: how the training folder is
/// split, whether leakage is an error, where images are kept.
const NOT_DECODING: [&str; 4] = ["cache", "split_seed", "validation_fraction", "allow_leakage"];

impl Layout {
    /// As [`Layout::load`], keeping images where `data.cache` says: in memory, or in an
    /// image cache file under `place` (read back when it exists and is whole).
    pub fn load_cached(self, place: &CachePlace) -> Result<Images, Error> {
        load(self, place)
    }
}

impl CachePlace {
    /// Whether `data.cache` keeps images of `estimated_bytes` on disk: `"disk"`, or
    /// `"auto"` above the memory budget.
    pub(crate) fn on_disk(&self, settings: &DataSettings, estimated_bytes: u64) -> bool {
        match settings.cache {
            CacheMode::Memory => false,
            CacheMode::Disk => true,
            CacheMode::Auto => estimated_bytes > self.memory_budget,
        }
    }
}

/// Decodes one split with its pixels kept in unnamed scratch files under the place's
/// folder (gone with the last of its pixels), not in memory: an external set scored
/// once, too large for memory, needs no cache file for later runs.
pub(crate) fn decode_to_scratch(
    files: SplitFiles,
    settings: &DataSettings,
    place: &CachePlace,
) -> Result<SplitRead, Error> {
    let dir = &place.dir;
    fs::create_dir_all(dir).map_err(failed(dir))?;
    let mut images = Writer::scratch(dir).map_err(failed(dir))?;
    // frames of a series wait in another until their series is assembled
    let mut frames = match settings.series {
        Series::Files => None,
        _ => Some(Writer::scratch(dir).map_err(failed(dir))?),
    };
    let mut keep = |pixels| images.keep(pixels).map_err(failed(dir));
    let mut keep_frame = |pixels| match &mut frames {
        Some(frames) => frames.keep(pixels).map_err(failed(dir)),
        None => Ok(pixels),
    };
    decode_split(files, settings, &mut keep, &mut keep_frame)
}

/// See [`Layout::load_cached`].
fn load(layout: Layout, place: &CachePlace) -> Result<Images, Error> {
    let settings = layout.settings();
    if !place.on_disk(settings, layout.estimated_bytes()) {
        return layout.load();
    }
    let mut data = serde_json::to_value(settings).expect("settings serialize");
    for key in NOT_DECODING {
        data.as_object_mut().expect("[data] is a table").remove(key);
    }
    let prefix = hex(&Sha256::digest(data.to_string()))[..16].to_string();
    let identity = serde_json::json!([FORMAT, env!("CARGO_PKG_VERSION"), data, layout.identity()]);
    let name = format!("{prefix}-{}", &hex(&Sha256::digest(identity.to_string()))[..32]);
    let dir = &place.dir;
    fs::create_dir_all(dir).map_err(failed(dir))?;
    let path = dir.join(format!("{name}.images"));
    // one process of those on the same [data] writes, the others read: readers share the
    // lock, a writer holds it alone and looks again once it has it
    let lock_path = dir.join(format!("{prefix}.lock"));
    let lock = File::create(&lock_path).map_err(failed(&lock_path))?;
    lock.lock_shared().map_err(failed(&lock_path))?;
    if let Ok(Some(images)) = read(&layout, &path) {
        // files left by an earlier writer because they were being read then
        if lock.try_lock().is_ok() {
            remove_older(dir, &prefix, &path);
        }
        return Ok(images);
    }
    lock.unlock().map_err(failed(&lock_path))?;
    lock.lock().map_err(failed(&lock_path))?;
    let replaced = match read(&layout, &path) {
        Ok(Some(images)) => return Ok(images),
        Ok(None) => None,
        Err(why) => {
            tracing::warn!("image cache {} is damaged ({why}): decoding the images again", path.display());
            Some(why)
        }
    };
    let partial = dir.join(format!("{name}.partial"));
    let written = write(layout, dir, &partial, &path);
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    let (settings, classes, reads) = written?;
    remove_older(dir, &prefix, &path);
    Ok(Images::new(settings, classes, reads, ImagesSource::Written { path, replaced }))
}

fn failed(path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Cache { path, source }
}

/// The images of the cache file at `path`; `Ok(None)` when there is none, `Err(why)`
/// when it is damaged.
fn read(layout: &Layout, path: &Path) -> Result<Option<Images>, String> {
    let Some((contents, file)) = open(path)? else { return Ok(None) };
    let reads = contents.reads(&file).map_err(|e| format!("its images cannot be read: {e}"))?;
    let settings = layout.settings().clone();
    Ok(Some(Images::new(settings, contents.classes, reads, ImagesSource::Cache(path.to_path_buf()))))
}

/// Decodes `layout` into a new cache file: written at `partial`, renamed to `path` when
/// whole.
fn write(
    layout: Layout,
    dir: &Path,
    partial: &Path,
    path: &Path,
) -> Result<(DataSettings, Vec<String>, SplitReads), Error> {
    let mut writer = Writer::create(partial, path).map_err(failed(partial))?;
    // frames of a series wait in an unnamed file until their series is assembled
    let mut frames = match layout.settings().series {
        Series::Files => None,
        _ => Some(Writer::scratch(dir).map_err(failed(dir))?),
    };
    let (settings, classes, reads) = {
        let mut keep = |pixels| writer.keep(pixels).map_err(failed(partial));
        let mut keep_frame = |pixels| match &mut frames {
            Some(frames) => frames.keep(pixels).map_err(failed(dir)),
            None => Ok(pixels),
        };
        layout.decode(&mut keep, &mut keep_frame)?
    };
    drop(frames);
    let contents = Contents::of(&classes, &reads, &mut writer).map_err(failed(partial))?;
    writer.finish(&contents).map_err(failed(partial))?;
    fs::rename(partial, path).map_err(failed(path))?;
    Ok((settings, classes, reads))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes the other cache files of the same `[data]`: their files have changed since.
/// A file that a process (on this machine or another) still reads is left for a later
/// writer: readers hold a shared lock on it.
fn remove_older(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|e| e.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.starts_with(&format!("{prefix}-")) || path == keep {
            continue;
        }
        let unused = || File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
        if name.ends_with(".partial") || (name.ends_with(".images") && unused()) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Appends levels to a cache file being written, with the running checksum.
struct Writer {
    file: Arc<StoredFile>,
    end: u64,
    crc: crc32fast::Hasher,
}

impl Writer {
    /// A new file at `path`, known as `name` to the pixels read from it.
    fn create(path: &Path, name: &Path) -> io::Result<Self> {
        let file = File::options().read(true).write(true).create(true).truncate(true).open(path)?;
        file.write_all_at(&[0; HEADER as usize], 0)?;
        Ok(Self::new(StoredFile { file, path: name.to_path_buf() }))
    }

    /// A file without a name in `dir`, gone when the last pixels kept in it are.
    fn scratch(dir: &Path) -> io::Result<Self> {
        Ok(Self::new(StoredFile { file: tempfile::tempfile_in(dir)?, path: dir.to_path_buf() }))
    }

    fn new(file: StoredFile) -> Self {
        Writer { file: Arc::new(file), end: HEADER, crc: crc32fast::Hasher::new() }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.end;
        self.file.file.write_all_at(bytes, offset)?;
        self.crc.update(bytes);
        self.end += bytes.len() as u64;
        Ok(offset)
    }

    /// `pixels`, now read from this file.
    fn keep(&mut self, pixels: Pixels) -> io::Result<Pixels> {
        if pixels.offset_in(&self.file).is_some() {
            return Ok(pixels);
        }
        let offset = self.append(&pixels.levels())?;
        Ok(Pixels::stored(pixels.packing(), pixels.len(), self.file.clone(), offset))
    }

    /// Appends the contents and writes the header; the file is then whole on disk.
    fn finish(mut self, contents: &Contents) -> io::Result<()> {
        let json = serde_json::to_vec(contents).map_err(io::Error::other)?;
        let offset = self.append(&json)?;
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&offset.to_le_bytes());
        header[16..24].copy_from_slice(&(json.len() as u64).to_le_bytes());
        header[24..28].copy_from_slice(&self.crc.finalize().to_le_bytes());
        self.file.file.write_all_at(&header, 0)?;
        self.file.file.sync_all()?;
        // this process reads it from now on: see `remove_older`
        self.file.file.lock_shared()
    }
}

/// What a cache file says besides the levels.
#[derive(Serialize, Deserialize)]
struct Contents {
    classes: Vec<String>,
    splits: Vec<CachedSplit>,
}

#[derive(Serialize, Deserialize)]
struct CachedSplit {
    name: String,
    folder: PathBuf,
    samples: Vec<CachedSample>,
    skipped: Vec<SkippedFile>,
    ignored: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct CachedSample {
    path: PathBuf,
    target: CachedTarget,
    packing: Packing,
    values: usize,
    offset: u64,
    pixel_spacing_mm: Option<[f64; 2]>,
    origin: Origin,
    info: ImageInfo,
}

#[derive(Serialize, Deserialize)]
enum CachedTarget {
    Class(usize),
    Labels(Vec<bool>),
    /// The mask's labels, at this offset.
    Mask {
        offset: u64,
        len: usize,
    },
}

impl Contents {
    /// The contents of `reads`, whose pixels are in `writer`'s file; masks are appended.
    fn of(classes: &[String], reads: &SplitReads, writer: &mut Writer) -> io::Result<Self> {
        let mut splits = Vec::new();
        for read in reads.iter() {
            let mut samples = Vec::with_capacity(read.samples.len());
            for (sample, info) in read.samples.iter().zip(&read.infos) {
                let kept = writer.keep(sample.image.clone())?;
                let offset = kept.offset_in(&writer.file).expect("kept in this file");
                let target = match &sample.target {
                    Target::Class(c) => CachedTarget::Class(*c),
                    Target::Labels(present) => CachedTarget::Labels(present.clone()),
                    Target::Mask(mask) => CachedTarget::Mask { offset: writer.append(mask)?, len: mask.len() },
                };
                samples.push(CachedSample {
                    path: sample.path.clone(),
                    target,
                    packing: sample.image.packing(),
                    values: sample.image.len(),
                    offset,
                    pixel_spacing_mm: sample.pixel_spacing_mm,
                    origin: sample.origin.clone(),
                    info: info.clone(),
                });
            }
            splits.push(CachedSplit {
                name: read.name.to_string(),
                folder: read.folder.clone(),
                samples,
                skipped: read.skipped.clone(),
                ignored: read.ignored.clone(),
            });
        }
        Ok(Contents { classes: classes.to_vec(), splits })
    }

    /// The splits as read, their pixels read from `file` as batches need them.
    fn reads(&self, file: &Arc<StoredFile>) -> io::Result<SplitReads> {
        let mut train = None;
        let mut validation = None;
        let mut test = None;
        for split in &self.splits {
            let mut samples = Vec::with_capacity(split.samples.len());
            for s in &split.samples {
                let target = match &s.target {
                    CachedTarget::Class(c) => Target::Class(*c),
                    CachedTarget::Labels(present) => Target::Labels(present.clone()),
                    CachedTarget::Mask { offset, len } => {
                        let mut mask = vec![0; *len];
                        file.file.read_exact_at(&mut mask, *offset)?;
                        Target::Mask(mask)
                    }
                };
                samples.push(Sample {
                    path: s.path.clone(),
                    target,
                    image: Pixels::stored(s.packing, s.values, file.clone(), s.offset),
                    pixel_spacing_mm: s.pixel_spacing_mm,
                    origin: s.origin.clone(),
                });
            }
            let (name, slot) = match split.name.as_str() {
                "train" => ("train", &mut train),
                "validation" => ("validation", &mut validation),
                _ => ("test", &mut test),
            };
            *slot = Some(SplitRead {
                name,
                folder: split.folder.clone(),
                samples,
                infos: split.samples.iter().map(|s| s.info.clone()).collect(),
                skipped: split.skipped.clone(),
                ignored: split.ignored.clone(),
            });
        }
        let missing = || io::Error::other("a split is missing from the cache");
        Ok(SplitReads { train: train.ok_or_else(missing)?, validation, test: test.ok_or_else(missing)? })
    }
}

/// The cache file at `path` checked whole: `Ok(None)` when there is none, `Err(why)`
/// when it is damaged.
fn open(path: &Path) -> Result<Option<(Contents, Arc<StoredFile>)>, String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // held while its images are read: a writer of a newer file then leaves this one be
    file.lock_shared().map_err(|e| format!("it cannot be locked: {e}"))?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if fs::metadata(path).map(|m| m.ino()).ok() != Some(metadata.ino()) {
        return Ok(None); // deleted or replaced between opening and locking
    }
    let length = metadata.len();
    let mut header = [0u8; HEADER as usize];
    file.read_exact(&mut header).map_err(|_| "shorter than its header".to_string())?;
    if &header[..8] != MAGIC {
        return Err("not an image cache of this radrun".into());
    }
    let word = |range: std::ops::Range<usize>| u64::from_le_bytes(header[range].try_into().expect("8 bytes"));
    let (offset, json_len) = (word(8..16), word(16..24));
    let crc = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
    if offset.checked_add(json_len) != Some(length) {
        return Err(format!("{length} bytes where its header says {}", offset.saturating_add(json_len)));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    if hasher.finalize() != crc {
        return Err("its checksum does not match".into());
    }
    let mut json = vec![0u8; json_len as usize];
    file.read_exact_at(&mut json, offset).map_err(|e| e.to_string())?;
    let contents: Contents = serde_json::from_slice(&json).map_err(|e| format!("its contents do not parse: {e}"))?;
    Ok(Some((contents, Arc::new(StoredFile { file, path: path.to_path_buf() }))))
}
