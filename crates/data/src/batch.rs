//! Batches for one epoch: the epoch's order, augmentation applied in parallel, channels
//! repeated, and the next batch prepared on a background thread while the current one
//! trains.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::augment::Transform;
use crate::sample::{Split, Target};
use crate::settings::AugmentSettings;
use crate::split::epoch_order;

/// How an epoch's batches are made.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub batch_size: usize,
    /// Output channels: 1, or 3 with the gray image repeated.
    pub channels: usize,
    /// Visit samples in a seeded random order (training) or in file order.
    pub shuffle: bool,
    /// Augmentation, for training only.
    pub augment: Option<AugmentSettings>,
    pub seed: u64,
    pub epoch: u64,
    /// Batches of the epoch's order to leave out at its start (a run resumed in the
    /// middle of an epoch); the rest are the same batches as in a whole epoch.
    pub start_batch: usize,
    /// Image size of the split's samples.
    pub height: usize,
    pub width: usize,
}

/// Labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchTargets {
    /// Class index per image.
    Classes(Vec<i64>),
    /// `n x height x width` label indices.
    Masks(Vec<u8>),
    /// Multi-label: `n x classes`, 1 where the label is present, else 0.
    Labels(Vec<f32>),
}

/// One batch, laid out NCHW.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    /// [n, channels, height, width]
    pub shape: [usize; 4],
    pub targets: BatchTargets,
    /// Index of each image in its split.
    pub indices: Vec<usize>,
}

/// Builds the batch of `indices` (positions in `split`).
pub fn make_batch(split: &Split, indices: &[usize], options: &BatchOptions) -> Batch {
    let (h, w, c) = (options.height, options.width, options.channels);
    let plane = h * w;
    let mut images = vec![0f32; indices.len() * c * plane];
    let is_masks = matches!(split.samples.first().map(|s| &s.target), Some(Target::Mask(_)));
    let mut masks = if is_masks { vec![0u8; indices.len() * plane] } else { Vec::new() };
    let mut mask_chunks: Vec<&mut [u8]> =
        if is_masks { masks.chunks_mut(plane).collect() } else { (0..indices.len()).map(|_| &mut [][..]).collect() };
    images.par_chunks_mut(c * plane).zip(mask_chunks.par_iter_mut()).zip(indices.par_iter()).for_each(
        |((out, mask_out), &index)| {
            let sample = &split.samples[index];
            let transform = match &options.augment {
                Some(a) => Transform::draw(a, options.seed, options.epoch, index as u64, h, w),
                None => Transform::IDENTITY,
            };
            let (fill, fill_value) = options
                .augment
                .as_ref()
                .map_or((crate::settings::FillMode::Nearest, 0.0), |a| (a.fill, a.fill_value as f32));
            let mut src = vec![0f32; plane];
            if sample.image.len() == out.len() {
                // one plane per channel (several windows): each moved the same way
                for (start, channel) in (0..).step_by(plane).zip(out.chunks_mut(plane)) {
                    sample.image.unpack_into(start, &mut src);
                    transform.apply_image(&src, h, w, fill, fill_value, channel);
                }
            } else {
                debug_assert_eq!(sample.image.len(), plane, "one plane, or one per channel");
                // one gray plane, repeated into every channel
                sample.image.unpack_into(0, &mut src);
                let (first, rest) = out.split_at_mut(plane);
                transform.apply_image(&src, h, w, fill, fill_value, first);
                for channel in rest.chunks_mut(plane) {
                    channel.copy_from_slice(first);
                }
            }
            if let Target::Mask(mask) = &sample.target {
                transform.apply_mask(mask, h, w, fill, mask_out);
            }
        },
    );
    let targets = match split.samples.first().map(|s| &s.target) {
        Some(Target::Labels(_)) => BatchTargets::Labels(
            indices
                .iter()
                .flat_map(|&i| match &split.samples[i].target {
                    Target::Labels(present) => present.iter().map(|&p| f32::from(u8::from(p))),
                    _ => unreachable!("a split holds one kind of target"),
                })
                .collect(),
        ),
        _ if is_masks => BatchTargets::Masks(masks),
        _ => BatchTargets::Classes(
            indices
                .iter()
                .map(|&i| match split.samples[i].target {
                    Target::Class(class) => class as i64,
                    _ => unreachable!("a split holds one kind of target"),
                })
                .collect(),
        ),
    };
    Batch { images, shape: [indices.len(), c, h, w], targets, indices: indices.to_vec() }
}

/// An epoch's batches, made on a background thread one or two ahead of the consumer,
/// as [`Batch`]es or as what [`epoch_batches_with`]'s `prepare` makes of them.
pub struct Batches<T = Batch> {
    receiver: Receiver<T>,
    worker: Option<JoinHandle<()>>,
    len: usize,
}

impl<T> Batches<T> {
    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> Iterator for Batches<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let next = self.receiver.recv().ok();
        if next.is_none()
            && let Some(worker) = self.worker.take()
            && let Err(panic) = worker.join()
        {
            std::panic::resume_unwind(panic);
        }
        next
    }
}

/// Starts making the batches of one epoch over `split`.
pub fn epoch_batches(split: &Split, options: BatchOptions) -> Batches {
    epoch_batches_with(split, options, |batch| batch)
}

/// Starts making the batches of one epoch over `split`, each passed through `prepare`
/// on the background thread too (the trainer turns them into page-locked tensors there,
/// off the thread that drives the GPU).
pub fn epoch_batches_with<T: Send + 'static>(
    split: &Split,
    options: BatchOptions,
    prepare: impl Fn(Batch) -> T + Send + 'static,
) -> Batches<T> {
    assert!(options.batch_size > 0, "batch size must be positive");
    let order = epoch_order(split.len(), options.shuffle, options.seed, options.epoch);
    let chunks: Vec<Vec<usize>> =
        order.chunks(options.batch_size).skip(options.start_batch).map(<[usize]>::to_vec).collect();
    let split = split.clone();
    Batches::spawn(chunks.len(), move |i| prepare(make_batch(&split, &chunks[i], &options)))
}

impl<T: Send + 'static> Batches<T> {
    /// `len` batches, batch `i` made by `make(i)` on a background thread, one or two
    /// ahead of the consumer.
    pub fn spawn(len: usize, make: impl Fn(usize) -> T + Send + 'static) -> Self {
        let (sender, receiver) = sync_channel(2);
        let worker = std::thread::Builder::new()
            .name("radrun-batches".into())
            .spawn(move || {
                for i in 0..len {
                    if sender.send(make(i)).is_err() {
                        break; // the consumer stopped early
                    }
                }
            })
            .expect("cannot start the batch thread");
        Batches { receiver, worker: Some(worker), len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::Pixels;
    use crate::sample::Sample;
    use std::path::PathBuf;

    fn split(n: usize) -> Split {
        let samples: Vec<Sample> = (0..n)
            .map(|i| Sample {
                path: PathBuf::from(format!("{i}.png")),
                target: Target::Class(i % 3),
                image: Pixels::pack(vec![i as f32 / n as f32; 16]),
                origin: Default::default(),
                pixel_spacing_mm: None,
            })
            .collect();
        Split { name: "train", samples: samples.into() }
    }

    fn options(shuffle: bool) -> BatchOptions {
        BatchOptions {
            batch_size: 4,
            channels: 3,
            shuffle,
            augment: None,
            seed: 1,
            epoch: 0,
            start_batch: 0,
            height: 4,
            width: 4,
        }
    }

    #[test]
    fn an_epoch_visits_every_sample_once_in_nchw_batches() {
        let batches: Vec<Batch> = epoch_batches(&split(10), options(true)).collect();
        assert_eq!(batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let b = &batches[0];
        assert_eq!(b.shape, [4, 3, 4, 4]);
        // channels repeat the gray image, labels follow the indices
        let i = b.indices[1];
        assert!(b.images[48..96].iter().all(|&v| v == i as f32 / 10.0));
        assert_eq!(b.targets, BatchTargets::Classes(b.indices.iter().map(|&i| (i % 3) as i64).collect()));
    }

    #[test]
    fn images_with_one_plane_per_window_fill_the_channels_in_order() {
        let mut split = split(2);
        let mut samples = split.samples.to_vec();
        for sample in &mut samples {
            // three windows: planes 0.1, 0.2, 0.3
            sample.image = Pixels::pack([0.1f32, 0.2, 0.3].iter().flat_map(|&v| vec![v; 16]).collect());
        }
        split.samples = samples.into();
        let mut opts = options(false);
        opts.augment = Some(AugmentSettings { rotation: 30.0, ..Default::default() });
        let batch = make_batch(&split, &[0, 1], &opts);
        // stored as 16-bit levels over the image's range (0.1 to 0.3): within half a level,
        // plus four float32 roundings of values below 1 (see pixels.rs); rotating a constant
        // plane blends equal values, in float64, and gives them back exactly
        let bound = 0.2 / 65535.0 / 2.0 + 2.0 * f32::EPSILON;
        for (channel, chunk) in batch.images[..48].chunks(16).enumerate() {
            let want = [0.1, 0.2, 0.3][channel];
            assert!(chunk.iter().all(|&v| (v - want).abs() <= bound), "channel {channel}: {chunk:?}");
        }
    }

    #[test]
    fn augmented_batches_are_reproducible() {
        let mut opts = options(true);
        opts.augment = Some(AugmentSettings { brightness: 0.2, ..Default::default() });
        let a: Vec<Batch> = epoch_batches(&split(9), opts.clone()).collect();
        let b: Vec<Batch> = epoch_batches(&split(9), opts.clone()).collect();
        assert_eq!(a, b);
        // a resumed epoch gives the same batches from where it stopped
        let resumed: Vec<Batch> = epoch_batches(&split(9), BatchOptions { start_batch: 1, ..opts }).collect();
        assert_eq!(resumed, a[1..]);
    }
}
