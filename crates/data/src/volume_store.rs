//! A run's working volumes and the patches cut from them.
//!
//! - [`VolumeImages::working_case`]: a case read again and made what the network sees:
//!   reoriented (`data.orientation`), cropped to its foreground (`data.crop_foreground`),
//!   resampled to the run's spacing (`data.interpolation`, nearest along the coarse axis
//!   of an anisotropic volume; its mask by `data.mask_interpolation`), and normalised
//!   per channel (`data.normalize`, CT statistics fitted on the run's training cases),
//!   with the [`Placement`] that puts a prediction back on the source scan.
//! - [`StoredCase`]: a working case kept as raw files (channels `[c, z, y, x]` float32,
//!   labels `[z, y, x]` u8, x fastest) and memory-mapped, so that patches are read
//!   without holding whole volumes in memory, with up to 10,000 voxel positions of each
//!   label (evenly strided) for foreground sampling.
//! - [`PatchPlan`]: the training patches of one batch, drawn from (seed, epoch, batch)
//!   so that a resumed run cuts the same ones: the cases in a seeded order of the epoch;
//!   nnU-Net's foreground oversampling (the last `round(batch x share)` patches of each
//!   batch centred on a voxel of a label present in the case, the label and voxel drawn
//!   at random; the others anywhere); a case smaller than the patch padded (image 0,
//!   background 0), its position in the patch drawn at random too; training patches
//!   augmented by [`crate::volume_augment`] from the same generator.

use std::fs;
use std::io::Write;
use std::path::Path;

use memmap2::Mmap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Error;
use crate::decoded::apply_window;
use crate::intensity::{CtStatistics, zscore};
use crate::placement::{Placement, Preparation};
use crate::settings::{DataSettings, Window};
use crate::split::epoch_order;
use crate::volume::Volume;
use crate::volume_augment::{Spatial, VolumeAugment, colour};
use crate::volume_dataset::{CaseFacts, Preprocessing, VolumeImages};
use crate::volume_settings::{Interpolation, MaskInterpolation, Normalize};

/// A case on the working grid.
#[derive(Debug, Clone)]
pub struct WorkingCase {
    pub name: String,
    /// Channels after normalisation.
    pub image: Volume,
    /// Its label map on the same grid (segmentation).
    pub labels: Option<Volume>,
    /// How to put a working-grid label map back on the source scan.
    pub placement: Placement,
}

/// `volume`'s channels as `data.normalize` says, with the run's CT statistics.
fn normalise(volume: &mut Volume, settings: &DataSettings, ct: &[CtStatistics]) {
    let per_channel = volume.shape.iter().product::<usize>();
    match settings.normalize {
        Normalize::None => {}
        Normalize::Ct => {
            for (channel, stats) in volume.voxels.chunks_mut(per_channel).zip(ct) {
                stats.apply_to(channel);
            }
        }
        Normalize::Zscore | Normalize::ZscoreNonzero => {
            for channel in volume.voxels.chunks_mut(per_channel) {
                zscore(channel, settings.normalize == Normalize::ZscoreNonzero);
            }
        }
        Normalize::Window => {
            // one channel per window, from the first channel (Settings refuse "auto")
            let values: Vec<f64> = volume.voxels[..per_channel].iter().map(|&v| f64::from(v)).collect();
            let mut windowed = Vec::with_capacity(per_channel * settings.window.0.len());
            for window in &settings.window.0 {
                let (center, width) = match *window {
                    Window::Explicit { center, width } => (center, width),
                    Window::Preset(preset) => preset.center_width(),
                    Window::File | Window::Auto => (40.0, 400.0),
                };
                windowed.extend(apply_window(&values, center, width));
            }
            volume.channels = settings.window.0.len();
            volume.voxels = windowed;
        }
    }
}

impl VolumeImages {
    /// `case` (one of these images' cases) on the working grid of `preprocessing`.
    pub fn working_case(&self, case: &CaseFacts, preprocessing: &Preprocessing) -> Result<WorkingCase, Error> {
        self.working_case_and_mask(case, preprocessing).map(|(working, _)| working)
    }

    /// `case` on the working grid, and its mask as read (on the source scan's grid),
    /// which a prediction put back by the case's placement is scored against.
    pub fn working_case_and_mask(
        &self,
        case: &CaseFacts,
        preprocessing: &Preprocessing,
    ) -> Result<(WorkingCase, Option<Volume>), Error> {
        let (source, mask) = self.read_again(case)?;
        let working = WorkingCase::prepare(&case.name, &source, mask.as_ref(), self.settings(), preprocessing);
        Ok((working, mask))
    }
}

impl WorkingCase {
    /// `source` (and its `mask`) made a working case of `preprocessing` under `settings`.
    pub fn prepare(
        name: &str,
        source: &Volume,
        mask: Option<&Volume>,
        settings: &DataSettings,
        preprocessing: &Preprocessing,
    ) -> WorkingCase {
        let how = Preparation {
            orientation: settings.orientation,
            crop_foreground: settings.crop_foreground,
            spacing: preprocessing.spacing,
            order: match settings.interpolation {
                Interpolation::Linear => 1,
                Interpolation::Cubic => 3,
            },
        };
        let (mut image, placement) = Placement::prepare(source, &how);
        normalise(&mut image, settings, &preprocessing.ct);
        let linear = settings.mask_interpolation == MaskInterpolation::Linear;
        let labels = mask.map(|m| placement.labels_forward(m, image.shape, linear));
        WorkingCase { name: name.to_string(), image, labels, placement }
    }

    /// Its channels (`[c, z, y, x]`) cropped or padded to `size` about its centre, as
    /// [`PatchPlan::centred`] cuts stored cases.
    pub fn centred_block(&self, size: [usize; 3]) -> Vec<f32> {
        let [nx, ny, nz] = self.image.shape;
        let block =
            Block { voxels: &self.image.voxels, labels: None, shape: [nz, ny, nx], channels: self.image.channels };
        let mut image = vec![0f32; self.image.channels * size.iter().product::<usize>()];
        block.cut(centred_corner([nz, ny, nx], size), size, &mut image, &mut []);
        image
    }
}

/// Voxel positions kept per label for foreground sampling (nnU-Net's 10,000).
const POSITIONS_PER_LABEL: usize = 10_000;

/// A working case kept on disk and memory-mapped.
#[derive(Debug)]
pub struct StoredCase {
    pub name: String,
    /// `[z, y, x]` voxels.
    pub shape: [usize; 3],
    pub channels: usize,
    image: Mmap,
    labels: Option<Mmap>,
    /// Per label present (1 and up): evenly strided flat positions of its voxels.
    pub foreground: Vec<(u8, Vec<u32>)>,
    /// Its class (classification), set by the caller.
    pub class: Option<usize>,
}

fn keep_file(path: &Path, bytes: &[u8]) -> Result<Mmap, Error> {
    let failed = |source| Error::Store { path: path.to_path_buf(), source };
    let partial = path.with_extension("partial");
    let mut file = fs::File::create(&partial).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    fs::rename(&partial, path).map_err(failed)?;
    let file = fs::File::open(path).map_err(failed)?;
    // SAFETY: the file is radrun's own, written above and never changed while mapped
    unsafe { Mmap::map(&file) }.map_err(failed)
}

impl StoredCase {
    /// Writes `case` into `folder` (as `<index>.f32` and `<index>.u8`) and maps it.
    pub fn keep(case: &WorkingCase, folder: &Path, index: usize) -> Result<StoredCase, Error> {
        let [nx, ny, nz] = case.image.shape;
        let image = keep_file(&folder.join(format!("{index}.f32")), bytemuck::cast_slice(&case.image.voxels))?;
        let (labels, foreground) = match &case.labels {
            Some(labels) => {
                let values: Vec<u8> = labels.voxels.iter().map(|&v| v as u8).collect();
                let mut foreground = Vec::new();
                for label in 1..=values.iter().copied().max().unwrap_or(0) {
                    let at: Vec<u32> = (0..values.len() as u32).filter(|&i| values[i as usize] == label).collect();
                    if !at.is_empty() {
                        let stride = at.len().div_ceil(POSITIONS_PER_LABEL);
                        foreground.push((label, at.into_iter().step_by(stride).collect()));
                    }
                }
                (Some(keep_file(&folder.join(format!("{index}.u8")), &values)?), foreground)
            }
            None => (None, Vec::new()),
        };
        Ok(StoredCase {
            name: case.name.clone(),
            shape: [nz, ny, nx],
            channels: case.image.channels,
            image,
            labels,
            foreground,
            class: None,
        })
    }

    /// Its channels, `[c, z, y, x]`, x fastest.
    pub fn voxels(&self) -> &[f32] {
        bytemuck::cast_slice(&self.image)
    }

    /// Its labels, `[z, y, x]`, x fastest (segmentation).
    pub fn labels(&self) -> Option<&[u8]> {
        self.labels.as_deref()
    }

    /// The patch of `size` whose first voxel is at `lower` (possibly outside the case:
    /// zeros there), into `image` (`[c, z, y, x]`) and `labels` (`[z, y, x]`).
    pub fn read_patch(&self, lower: [i64; 3], size: [usize; 3], image: &mut [f32], labels: &mut [u8]) {
        let block =
            Block { voxels: self.voxels(), labels: self.labels.as_deref(), shape: self.shape, channels: self.channels };
        block.cut(lower, size, image, labels);
    }

    /// The patch of `size` about the centre of the box at `lower`, each voxel (its index
    /// in the patch, `at`) read at `source(at, offset)` from that centre (offsets in
    /// voxels, `[z, y, x]`): the image trilinearly, the labels from the nearest voxel, 0
    /// outside the case.
    pub fn sample_patch(
        &self,
        lower: [i64; 3],
        size: [usize; 3],
        source: impl Fn(usize, [f64; 3]) -> [f64; 3],
        image: &mut [f32],
        labels: &mut [u8],
    ) {
        let [nz, ny, nx] = self.shape;
        let sides = [nz, ny, nx];
        let (voxels, per_channel) = (self.voxels(), nz * ny * nx);
        let centre: [f64; 3] = std::array::from_fn(|d| (size[d] as f64 - 1.0) / 2.0);
        let patch_voxels: usize = size.iter().product();
        for at in 0..patch_voxels {
            let p = [at / (size[1] * size[2]), (at / size[2]) % size[1], at % size[2]];
            let offset: [f64; 3] = std::array::from_fn(|d| p[d] as f64 - centre[d]);
            let s = source(at, offset);
            let point: [f64; 3] = std::array::from_fn(|d| lower[d] as f64 + centre[d] + s[d]);
            // the labels: the nearest voxel
            let nearest: [f64; 3] = point.map(f64::round);
            let inside = (0..3).all(|d| nearest[d] >= 0.0 && (nearest[d] as usize) < sides[d]);
            labels[at] = match (&self.labels, inside) {
                (Some(l), true) => l[(nearest[0] as usize * ny + nearest[1] as usize) * nx + nearest[2] as usize],
                _ => 0,
            };
            // the image: the 8 voxels around, weighted, those outside counting 0
            let base = point.map(f64::floor);
            let frac: [f64; 3] = std::array::from_fn(|d| point[d] - base[d]);
            for c in 0..self.channels {
                let mut sum = 0.0;
                for corner in 0..8usize {
                    let step = [corner >> 2 & 1, corner >> 1 & 1, corner & 1];
                    let q: [f64; 3] = std::array::from_fn(|d| base[d] + step[d] as f64);
                    if (0..3).all(|d| q[d] >= 0.0 && (q[d] as usize) < sides[d]) {
                        let w: f64 = (0..3).map(|d| if step[d] == 1 { frac[d] } else { 1.0 - frac[d] }).product();
                        let flat = (q[0] as usize * ny + q[1] as usize) * nx + q[2] as usize;
                        sum += w * f64::from(voxels[c * per_channel + flat]);
                    }
                }
                image[c * patch_voxels + at] = sum as f32;
            }
        }
    }
}

/// Voxels `[c, z, y, x]` (x fastest) and their labels, in memory or mapped.
struct Block<'a> {
    voxels: &'a [f32],
    labels: Option<&'a [u8]>,
    /// `[z, y, x]`.
    shape: [usize; 3],
    channels: usize,
}

impl Block<'_> {
    /// The patch of `size` whose first voxel is at `lower` (zeros outside), into `image`
    /// (`[c, z, y, x]`) and `labels` (`[z, y, x]`).
    fn cut(&self, lower: [i64; 3], size: [usize; 3], image: &mut [f32], labels: &mut [u8]) {
        let [nz, ny, nx] = self.shape;
        let per_channel = nz * ny * nx;
        let [pz, py, px] = size;
        image.fill(0.0);
        labels.fill(0);
        let inside = |at: i64, n: usize| at >= 0 && (at as usize) < n;
        // the x range of a row that falls inside
        let x0 = lower[2].max(0);
        let x1 = (lower[2] + px as i64).min(nx as i64);
        if x1 <= x0 {
            return;
        }
        let (from, to) = ((x0 - lower[2]) as usize, (x1 - lower[2]) as usize);
        for z in 0..pz {
            let sz = lower[0] + z as i64;
            for y in 0..py {
                let sy = lower[1] + y as i64;
                if !(inside(sz, nz) && inside(sy, ny)) {
                    continue;
                }
                let row = (sz as usize * ny + sy as usize) * nx;
                let (src0, src1) = (row + x0 as usize, row + x1 as usize);
                let out = (z * py + y) * px;
                for c in 0..self.channels {
                    let base = c * pz * py * px + out;
                    image[base + from..base + to]
                        .copy_from_slice(&self.voxels[c * per_channel + src0..c * per_channel + src1]);
                }
                if let Some(l) = self.labels {
                    labels[out + from..out + to].copy_from_slice(&l[src0..src1]);
                }
            }
        }
    }
}

/// The first voxel of the block of `size` about the centre of a case of `shape` (both
/// `[z, y, x]`): cropped, or padded where the case is smaller, as MONAI's
/// `ResizeWithPadOrCrop` does: a crop starts at `shape / 2 - size / 2`
/// (`CenterSpatialCrop`), a pad puts `(size - shape) / 2` voxels before the case and
/// the rest after it (`SpatialPad`), divisions rounding down.
pub fn centred_corner(shape: [usize; 3], size: [usize; 3]) -> [i64; 3] {
    std::array::from_fn(|d| {
        let (shape, size) = (shape[d] as i64, size[d] as i64);
        if shape >= size { shape / 2 - size / 2 } else { -((size - shape) / 2) }
    })
}

/// Cuts the patch of `size` at `lower` from `case` into `image` and `labels`, moved and
/// coloured as `settings` draws from `rng` ([`crate::volume_augment`]).
pub fn augmented_patch(
    case: &StoredCase,
    lower: [i64; 3],
    size: [usize; 3],
    settings: &VolumeAugment,
    rng: &mut ChaCha8Rng,
    (image, labels): (&mut [f32], &mut [u8]),
) {
    let spatial = Spatial::draw(settings, size, rng);
    if spatial.is_plain() {
        case.read_patch(lower, size, image, labels);
        spatial.mirror(image, labels, size, case.channels);
    } else {
        case.sample_patch(lower, size, |at, q| spatial.source(at, q), image, labels);
    }
    colour(image, size, case.channels, settings, rng);
}

/// The training patches of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPlan {
    /// `[z, y, x]` voxels.
    pub patch: [usize; 3],
    pub batch_size: usize,
    /// `data.foreground_oversample`: the share of each batch forced onto a label.
    pub foreground_share: f64,
    pub seed: u64,
    /// Batches per epoch (`train.iterations_per_epoch`); 0: enough to see each case once.
    pub iterations: usize,
    /// Training augmentation (`None` for validation patches).
    pub augment: Option<VolumeAugment>,
    /// Whole cases about their centre instead of patches (classification, `cnn3d`):
    /// each case cropped or padded to `patch` ([`centred_corner`]), and, without
    /// `iterations`, each case once per epoch, the last batch holding what is left.
    pub centred: bool,
}

/// A batch of patches: images `[n, c, z, y, x]`, labels `[n, z, y, x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchBatch {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    /// `[n, c, z, y, x]`.
    pub shape: [usize; 5],
    /// The case of each patch, and whether it was forced onto a label.
    pub cases: Vec<(usize, bool)>,
}

/// How many of a batch of `batch_size` patches are forced onto a label: nnU-Net's
/// `batch - round(batch x (1 - share))` (1 of 2 at 0.33).
pub fn forced_patches(batch_size: usize, share: f64) -> usize {
    batch_size - (batch_size as f64 * (1.0 - share)).round() as usize
}

impl PatchPlan {
    /// Batches in an epoch: `iterations`, or enough to see every one of `cases` once
    /// (more batches go round the epoch's order of cases again).
    pub fn batches_per_epoch(&self, cases: usize) -> usize {
        if self.iterations > 0 { self.iterations } else { cases.div_ceil(self.batch_size) }
    }

    /// Batch `batch` of `epoch` over `cases`.
    pub fn batch(&self, cases: &[StoredCase], epoch: u64, batch: usize) -> PatchBatch {
        let order = epoch_order(cases.len(), true, self.seed, epoch);
        let n = match self.centred && self.iterations == 0 {
            true => self.batch_size.min(cases.len() - batch * self.batch_size),
            false => self.batch_size,
        };
        let channels = cases[0].channels;
        let voxels: usize = self.patch.iter().product();
        let mut images = vec![0f32; n * channels * voxels];
        let mut labels = vec![0u8; n * voxels];
        let random = n - forced_patches(n, self.foreground_share);
        let mut chosen = Vec::with_capacity(n);
        for (slot, (image, label)) in images.chunks_mut(channels * voxels).zip(labels.chunks_mut(voxels)).enumerate() {
            let index = order[(batch * self.batch_size + slot) % order.len()];
            let case = &cases[index];
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream((epoch << 32) ^ ((batch as u64) << 8) ^ slot as u64);
            let forced = !self.centred && slot >= random && !case.foreground.is_empty();
            let lower = match self.centred {
                true => centred_corner(case.shape, self.patch),
                false => self.corner(case, forced, &mut rng),
            };
            match &self.augment {
                Some(settings) => augmented_patch(case, lower, self.patch, settings, &mut rng, (image, label)),
                None => case.read_patch(lower, self.patch, image, label),
            }
            chosen.push((index, forced));
        }
        PatchBatch { images, labels, shape: [n, channels, self.patch[0], self.patch[1], self.patch[2]], cases: chosen }
    }

    /// The first voxel of a patch in `case`: about a random voxel of a random label
    /// present (`forced`), else anywhere the patch fits (or the case fits in it).
    fn corner(&self, case: &StoredCase, forced: bool, rng: &mut ChaCha8Rng) -> [i64; 3] {
        let [nz, ny, nx] = case.shape;
        let sides = [nz as i64, ny as i64, nx as i64];
        let patch = self.patch.map(|p| p as i64);
        // the corners the patch may take along each axis
        let range = |d: usize| (sides[d] - patch[d]).min(0)..=(sides[d] - patch[d]).max(0);
        if forced {
            let (_, at) = &case.foreground[rng.random_range(0..case.foreground.len())];
            let flat = at[rng.random_range(0..at.len())] as i64;
            let voxel = [flat / (sides[1] * sides[2]), (flat / sides[2]) % sides[1], flat % sides[2]];
            std::array::from_fn(|d| (voxel[d] - patch[d] / 2).clamp(*range(d).start(), *range(d).end()))
        } else {
            std::array::from_fn(|d| rng.random_range(range(d)))
        }
    }
}
