//! The core types of a dataset: a sample (one decoded, resized image with its label and
//! where it came from), the splits of a run, and the dataset a run trains on. Every other
//! module of the crate builds or reads these; volumes (3D, with their spacing, origin and
//! direction) will be a sample kind of their own here, beside the 2D image.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Error;
use crate::pixels::Pixels;
use crate::settings::Task;
use crate::summary::DataSummary;

/// What a sample is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index into [`Dataset::classes`].
    Class(usize),
    /// Multi-label: whether each of [`Dataset::classes`] is present.
    Labels(Vec<bool>),
    /// One label index per pixel of the resized image (0 = background).
    Mask(Vec<u8>),
}

/// One decoded, resized image and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    pub target: Target,
    /// Intensities in [0, 1] (a little beyond after an interpolating resize), one or
    /// more planes of `height x width`, row-major, packed as [`Pixels`] says.
    pub image: Pixels,
    /// Millimetres per pixel of the resized image (rows, columns), when the file said.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Where the image came from, for splits that keep patients apart and for the
    /// record of the split. Never written out as is: it may identify a patient.
    pub origin: Origin,
}

/// Facts about an image file that splits and provenance need.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The group (see [`GroupBy`]); `None`: the image is a group of its own.
    pub group: Option<String>,
    /// The DICOM PatientID, whatever `group_by` says: the leakage check uses it too.
    pub patient_id: Option<String>,
    /// SHA-256 of the file's bytes, in hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Cross-validation: the fold (1 to k) of a training-folder image.
    pub fold: Option<u32>,
}

/// The samples of one split, cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Split {
    /// "train", "validation" or "test".
    pub name: &'static str,
    pub samples: Arc<[Sample]>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Images per class (classification), images with each label (multi-label), or
    /// images in which each label is present (segmentation), for `classes` classes or
    /// labels.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        class_counts(&self.samples, classes)
    }

    /// Each sample's file.
    pub fn paths(&self) -> Vec<&std::path::Path> {
        self.samples.iter().map(|s| s.path.as_path()).collect()
    }

    /// Each sample's group (patient), none for an image that is a group of its own.
    pub fn groups(&self) -> Vec<Option<&str>> {
        self.samples.iter().map(|s| s.origin.group.as_deref()).collect()
    }

    /// Class index of every sample (classification; multi-label images give their
    /// first label; masks give 0).
    pub fn class_labels(&self) -> Vec<usize> {
        class_labels(&self.samples)
    }
}

/// See [`Split::class_counts`].
pub(crate) fn class_counts(samples: &[Sample], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for sample in samples {
        match &sample.target {
            Target::Class(c) => counts[*c] += 1,
            Target::Labels(present) => {
                for (c, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                    counts[c] += 1;
                }
            }
            Target::Mask(mask) => {
                let present: BTreeSet<u8> = mask.iter().copied().collect();
                for label in present.into_iter().map(usize::from).filter(|&l| l < classes) {
                    counts[label] += 1;
                }
            }
        }
    }
    counts
}

/// See [`Split::class_labels`].
pub(crate) fn class_labels(samples: &[Sample]) -> Vec<usize> {
    samples
        .iter()
        .map(|s| match &s.target {
            Target::Class(c) => *c,
            // multi-label images are stratified by their first label (one past the
            // last class when they have none)
            Target::Labels(present) => present.iter().position(|p| *p).unwrap_or(present.len()),
            Target::Mask(_) => 0,
        })
        .collect()
}

/// A loaded dataset: every image decoded and resized once, kept in memory for all epochs.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub task: Task,
    /// Class names (folder names, sorted), or for segmentation the label names
    /// ("background", then "foreground" or "label 1", "label 2", ...).
    pub classes: Vec<String>,
    pub height: usize,
    pub width: usize,
    pub train: Split,
    pub validation: Split,
    pub test: Split,
    pub summary: DataSummary,
}

/// Where a decoded image's pixels are kept (see the image cache): in memory as they
/// are, or written to a cache file.
pub(crate) type Keep<'a> = &'a mut dyn FnMut(Pixels) -> Result<Pixels, Error>;
