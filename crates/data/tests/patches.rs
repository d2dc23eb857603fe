//! A run's working volumes and patches, on the example's CT set
//! (datasets.example/organs3d/nifti): a case kept as it is stored reads back voxel for
//! voxel; on the working grid its labels share the image's grid; a patch is exactly the
//! block it covers (zeros outside the case); a batch is the same for the same (seed,
//! epoch, batch) and its forced patches hold a label.

use std::path::PathBuf;

use radrun_data::nifti::{NiftiOptions, read};
use radrun_data::volume::Orientation;
use radrun_data::volume_dataset::{VolumeImages, read_volumes};
use radrun_data::volume_settings::{DEFAULT_MAX_VOXELS, Normalize, TargetSpacing};
use radrun_data::volume_store::{PatchPlan, StoredCase, WorkingCase, centred_corner};
use radrun_data::{DataSettings, SplitSettings, Task};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/organs3d/nifti")
}

fn images(settings: DataSettings) -> VolumeImages {
    read_volumes(&settings).unwrap()
}

fn settings() -> DataSettings {
    DataSettings {
        dims: 3,
        task: Task::Segmentation,
        root: example(),
        masks_folder: "Masks".into(),
        ..DataSettings::default()
    }
}

/// The run's training cases made working cases.
fn working(images: &VolumeImages, count: usize) -> Vec<WorkingCase> {
    let split = images.split(&SplitSettings::default()).unwrap();
    let pre = split.fit(images.settings());
    split.train.iter().take(count).map(|c| images.working_case(c, &pre).unwrap()).collect()
}

#[test]
fn a_case_kept_as_stored_is_its_files_voxels_and_mask() {
    let stored = DataSettings {
        orientation: Orientation::AsStored,
        spacing: TargetSpacing::AsStored,
        normalize: Normalize::None,
        ..settings()
    };
    let images = images(stored);
    let [case] = <[_; 1]>::try_from(working(&images, 1)).unwrap();
    let options = NiftiOptions { max_voxels: DEFAULT_MAX_VOXELS, channels_from_last_axis: false, nan_to_zero: false };
    let find = |folder: &str| {
        let dir = example().join("Train").join(folder);
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{}.", case.name)))
            .unwrap();
        read(&file, &options).unwrap().volume
    };
    let (image, mask) = (find("Images"), find("Masks"));
    assert_eq!(case.image.voxels, image.voxels);
    assert_eq!(case.image.affine, image.affine);
    assert_eq!(case.labels.unwrap().voxels, mask.voxels);
}

#[test]
fn on_the_working_grid_labels_follow_the_image_and_patches_are_the_blocks_they_cover() {
    let images = images(DataSettings { normalize: Normalize::Ct, ..settings() });
    let cases = working(&images, 3);
    let dir = tempfile::tempdir().unwrap();
    for (index, case) in cases.iter().enumerate() {
        let labels = case.labels.as_ref().unwrap();
        assert_eq!(labels.shape, case.image.shape, "{}", case.name);
        assert_eq!(labels.affine, case.image.affine, "{}", case.name);
        assert!(labels.voxels.iter().all(|&v| v == 0.0 || v == 1.0 || v == 2.0), "{}: whole labels", case.name);
        let stored = StoredCase::keep(case, dir.path(), index).unwrap();
        let [nx, ny, nz] = case.image.shape;
        assert_eq!(stored.shape, [nz, ny, nx]);
        // a block inside, and one hanging over the corner
        for lower in [[3i64, 5, 7], [-2, -3, nx as i64 - 4]] {
            let size = [6, 8, 9];
            let mut image = vec![0f32; 6 * 8 * 9];
            let mut label = vec![0u8; 6 * 8 * 9];
            stored.read_patch(lower, size, &mut image, &mut label);
            for (i, (&got, &mask)) in image.iter().zip(&label).enumerate() {
                let at = [lower[0] + (i / 72) as i64, lower[1] + ((i / 9) % 8) as i64, lower[2] + (i % 9) as i64];
                let inside = at[0] >= 0
                    && at[1] >= 0
                    && at[2] >= 0
                    && at[0] < nz as i64
                    && at[1] < ny as i64
                    && at[2] < nx as i64;
                let (want, want_label) = if inside {
                    let flat = (at[0] as usize * ny + at[1] as usize) * nx + at[2] as usize;
                    (case.image.voxels[flat], labels.voxels[flat] as u8)
                } else {
                    (0.0, 0)
                };
                assert_eq!((got, mask), (want, want_label), "{} at {at:?}", case.name);
            }
        }
    }
}

#[test]
fn a_turned_or_mirrored_patch_reads_the_turned_or_mirrored_block() {
    use radrun_data::volume_augment::VolumeAugment;
    use radrun_data::volume_store::augmented_patch;
    use rand::SeedableRng;
    let images = images(settings());
    let [case] = <[_; 1]>::try_from(working(&images, 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stored = StoredCase::keep(&case, dir.path(), 0).unwrap();
    let size = [7, 9, 9];
    let read = |lower: [i64; 3]| {
        let (mut image, mut label) = (vec![0f32; 7 * 81], vec![0u8; 7 * 81]);
        stored.read_patch(lower, size, &mut image, &mut label);
        (image, label)
    };
    let lower = [10, 20, 24];
    let (block, block_labels) = read(lower);
    let at = |z: usize, y: usize, x: usize| (z * 9 + y) * 9 + x;
    // a quarter turn about z: the voxel at offset (z, y, x) from the centre reads (z, -x, y)
    let (mut image, mut label) = (vec![0f32; 7 * 81], vec![0u8; 7 * 81]);
    stored.sample_patch(lower, size, |_, [z, y, x]| [z, -x, y], &mut image, &mut label);
    for z in 0..7 {
        for y in 0..9 {
            for x in 0..9 {
                let from = at(z, 8 - x, y);
                assert_eq!((image[at(z, y, x)], label[at(z, y, x)]), (block[from], block_labels[from]));
            }
        }
    }
    // mirroring alone (every other chance 0): the block flipped along every axis
    let mirror_only = VolumeAugment {
        rotation_probability: 0.0,
        scaling_probability: 0.0,
        noise_probability: 0.0,
        blur_probability: 0.0,
        brightness_probability: 0.0,
        contrast_probability: 0.0,
        inverted_gamma_probability: 0.0,
        gamma_probability: 0.0,
        mirror_probability: 1.0,
        ..VolumeAugment::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    augmented_patch(&stored, lower, size, &mirror_only, &mut rng, (&mut image, &mut label));
    for z in 0..7 {
        for y in 0..9 {
            for x in 0..9 {
                let from = at(6 - z, 8 - y, 8 - x);
                assert_eq!((image[at(z, y, x)], label[at(z, y, x)]), (block[from], block_labels[from]));
            }
        }
    }
    // an elastic deformation of alpha 0 samples every voxel where it is: the block itself,
    // through the sampling path (no colour: each chance above is 0)
    let still = VolumeAugment {
        mirror_probability: 0.0,
        elastic_probability: 1.0,
        elastic_alpha: [0.0, 0.0],
        ..mirror_only.clone()
    };
    augmented_patch(&stored, lower, size, &still, &mut rng, (&mut image, &mut label));
    assert_eq!((&image, &label), (&block, &block_labels));
    // with the whole default set, an elastic deformation of alpha 0 changes nothing
    // either: its draws come from a stream of their own, so the turns, scales, mirrors
    // and intensity changes drawn are those of the patch without it
    for seed in 0..8 {
        let with = |elastic: f64| {
            let settings =
                VolumeAugment { elastic_probability: elastic, elastic_alpha: [0.0, 0.0], ..VolumeAugment::default() };
            let (mut image, mut label) = (vec![0f32; 7 * 81], vec![0u8; 7 * 81]);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            augmented_patch(&stored, lower, size, &settings, &mut rng, (&mut image, &mut label));
            (image, label)
        };
        assert_eq!(with(0.0), with(1.0), "seed {seed}");
    }
    // a real one moves voxels (some from beyond the block: ~7 voxels at this alpha and
    // sigma), labels with them, each one a label of the case
    let elastic = VolumeAugment { elastic_alpha: [400.0, 400.0], elastic_sigma: [3.0, 3.0], ..still };
    augmented_patch(&stored, lower, size, &elastic, &mut rng, (&mut image, &mut label));
    let moved = image.iter().zip(&block).filter(|(a, b)| a != b).count();
    assert!(moved > image.len() / 2, "{moved} of {} voxels moved", image.len());
    let case_labels: std::collections::BTreeSet<u8> = stored.labels().unwrap().iter().copied().collect();
    assert!(label.iter().all(|l| case_labels.contains(l)));
}

#[test]
fn a_batch_is_drawn_from_seed_epoch_and_batch_and_its_last_third_holds_a_label() {
    let images = images(settings());
    let dir = tempfile::tempdir().unwrap();
    let stored: Vec<StoredCase> =
        working(&images, 5).iter().enumerate().map(|(i, c)| StoredCase::keep(c, dir.path(), i).unwrap()).collect();
    let plan = PatchPlan {
        patch: [16, 24, 24],
        batch_size: 3,
        foreground_share: 0.33,
        seed: 9,
        iterations: 0,
        augment: None,
        centred: false,
    };
    assert_eq!(plan.batches_per_epoch(5), 2);
    let a = plan.batch(&stored, 4, 1);
    assert_eq!(a, plan.batch(&stored, 4, 1), "the same batch again");
    assert_ne!(a, plan.batch(&stored, 5, 1), "another epoch");
    assert_eq!(a.shape, [3, 1, 16, 24, 24]);
    // round(3 x 0.67) = 2 anywhere, then 1 forced onto a label
    let forced: Vec<bool> = a.cases.iter().map(|(_, f)| *f).collect();
    assert_eq!(forced, [false, false, true]);
    let voxels = 16 * 24 * 24;
    assert!(a.labels[2 * voxels..].iter().any(|&l| l > 0), "the forced patch holds a label");
    // an epoch's two batches visit every case (the last one wraps round to the first)
    let mut seen: Vec<usize> =
        (0..2).flat_map(|b| plan.batch(&stored, 4, b).cases.into_iter().map(|(c, _)| c)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
}

#[test]
fn whole_cases_are_cropped_or_padded_about_their_centre_each_once_an_epoch() {
    // MONAI's ResizeWithPadOrCrop: CenterSpatialCrop starts at shape // 2 - size // 2
    // (52 -> 51: 1; 33 -> 32: 0; 60 -> 57: 2), SpatialPad puts (size - shape) // 2
    // before (10 -> 13: 1; 51 -> 64: 6)
    assert_eq!(centred_corner([52, 64, 10], [51, 64, 13]), [1, 0, -1]);
    assert_eq!(centred_corner([51, 60, 33], [64, 57, 32]), [-6, 2, 0]);
    let images = images(DataSettings { normalize: Normalize::Ct, ..settings() });
    let cases = working(&images, 5);
    let dir = tempfile::tempdir().unwrap();
    let stored: Vec<StoredCase> =
        cases.iter().enumerate().map(|(i, c)| StoredCase::keep(c, dir.path(), i).unwrap()).collect();
    // cropped in y and x, padded in z (at most 208 mm of slices: 70 on the 3 mm grid)
    let size = [80, 40, 36];
    let plan = PatchPlan {
        patch: size,
        batch_size: 3,
        foreground_share: 0.33,
        seed: 9,
        iterations: 0,
        augment: None,
        centred: true,
    };
    assert_eq!(plan.batches_per_epoch(5), 2);
    let (first, last) = (plan.batch(&stored, 2, 0), plan.batch(&stored, 2, 1));
    assert_eq!((first.shape[0], last.shape[0]), (3, 2), "the last batch holds what is left");
    let mut seen: Vec<usize> = first
        .cases
        .iter()
        .chain(&last.cases)
        .map(|&(c, forced)| {
            assert!(!forced, "whole cases are not forced onto a label");
            c
        })
        .collect();
    let voxels: usize = size.iter().product();
    for (slot, &(c, _)) in first.cases.iter().enumerate() {
        let block = cases[c].centred_block(size);
        assert_eq!(first.images[slot * voxels..(slot + 1) * voxels], block[..], "case {c}");
        // the block by hand: voxel (z, y, x) of the block is voxel (z + corner) of the case
        let [nx, ny, nz] = cases[c].image.shape;
        let corner = centred_corner([nz, ny, nx], size);
        assert!(corner[0] < 0 && corner[1] > 0 && corner[2] > 0, "{corner:?}");
        for (z, y, x) in [(0, 0, 0), (-corner[0] as usize, 5, 7), (79, 39, 35), (30, 20, 18)] {
            let at = [z as i64 + corner[0], y as i64 + corner[1], x as i64 + corner[2]];
            let expected = match at[0] >= 0 && (at[0] as usize) < nz {
                true => cases[c].image.voxels[(at[0] as usize * ny + at[1] as usize) * nx + at[2] as usize],
                false => 0.0,
            };
            assert_eq!(block[(z * 40 + y) * 36 + x], expected, "case {c} at {z} {y} {x}");
        }
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4], "each case once");
}
