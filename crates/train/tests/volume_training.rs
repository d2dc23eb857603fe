//! A 3D U-Net trained on patches of the example's CT set through the same loop as the
//! 2D networks: it learns (the organ's validation Dice rises well above chance), and a
//! run stopped in the middle of an epoch and resumed from its checkpoint ends with the
//! weights of the run that never stopped (patches are drawn from (seed, epoch, batch)).
//! Validating whole cases by sliding window (`eval.val_mode = "volumes"`) gives what
//! validating patches gives when a case is one patch.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use radrun_data::volume::Volume;
use radrun_data::volume_augment::VolumeAugment;
use radrun_data::volume_dataset::{VolumeImages, read_volumes};
use radrun_data::volume_settings::Normalize;
use radrun_data::volume_store::{PatchPlan, StoredCase, WorkingCase};
use radrun_data::{DataSettings, SplitSettings, Task};
use radrun_metrics::EpochRecord;
use radrun_metrics::evaluate::Blend;
use radrun_models::Network;
use radrun_settings::{LearningRate, ModelSettings, Norm, TrainRecipe, Unet3dSettings};
use radrun_train::fit::{Checkpoint, FitConfig, Observer, fit};
use radrun_train::patches::VolumePatches;
use radrun_train::sliding_window::SlidingWindow;
use tch::{Device, Tensor};

const PATCH: [usize; 3] = [16, 32, 32];

/// The example's CT set, read.
fn example() -> VolumeImages {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/organs3d/nifti");
    let settings = DataSettings {
        dims: 3,
        task: Task::Segmentation,
        root,
        masks_folder: "Masks".into(),
        normalize: Normalize::Ct,
        ..DataSettings::default()
    };
    read_volumes(&settings).unwrap()
}

/// The example's cases on their working grid, stored in `dir`: (training, validation,
/// spacing [z, y, x]).
fn stored(dir: &std::path::Path) -> (Vec<StoredCase>, Vec<StoredCase>, [f64; 3]) {
    let images = example();
    let split = images.split(&SplitSettings::default()).unwrap();
    let pre = split.fit(images.settings());
    let keep = |cases: &[&radrun_data::volume_dataset::CaseFacts], offset: usize| -> Vec<StoredCase> {
        cases
            .iter()
            .take(6)
            .enumerate()
            .map(|(i, c)| StoredCase::keep(&images.working_case(c, &pre).unwrap(), dir, offset + i).unwrap())
            .collect()
    };
    (keep(&split.train, 0), keep(&split.validation, 100), pre.working_spacing_zyx())
}

fn model() -> ModelSettings {
    ModelSettings::Unet3d(Unet3dSettings { initial_features: 4, depth: 2, norm: Norm::Instance, ..Default::default() })
}

/// Keeps the checkpoints handed over.
struct Watch {
    checkpoints: Vec<Checkpoint>,
}

impl Observer for Watch {
    fn checkpoint(&mut self, checkpoint: &Checkpoint) {
        self.checkpoints.push(Checkpoint {
            progress: checkpoint.progress.clone(),
            tensors: checkpoint.tensors.iter().map(|(n, t)| (n.clone(), t.copy())).collect(),
        });
    }
}

/// Variables by name, sorted.
type Weights = Vec<(String, Tensor)>;

/// Trains for `epochs` from `resume`, stopping after `stop_after` batches if given; the
/// epochs and the final weights, or the checkpoint the stop left.
/// libtorch's generator is one per process, and training seeds it before every batch:
/// two tests training at once would draw each other's numbers (the weights one starts
/// from, then), so the tests here train one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn train(
    data: &VolumePatches,
    spacing: [f64; 3],
    epochs: u32,
    stop_after: Option<usize>,
    resume: Option<Checkpoint>,
) -> (Result<Vec<EpochRecord>, Checkpoint>, Weights) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::manual_seed(3);
    let recipe = TrainRecipe {
        epochs: Some(epochs),
        batch_size: Some(2),
        learning_rate: Some(LearningRate::Value(3e-3)),
        ..Default::default()
    };
    let settings = recipe.resolve(&model()).unwrap();
    let [z, y, x] = PATCH.map(|s| s as i64);
    let mut network = Network::build_volume(&model(), [1, z, y, x], spacing, 3, Device::Cpu).unwrap();
    let batches = Cell::new(0usize);
    let stop = || {
        batches.set(batches.get() + 1);
        stop_after.is_some_and(|n| batches.get() > n)
    };
    let config = FitConfig {
        settings: &settings,
        model: &model(),
        augment: None,
        channels: 1,
        device: Device::Cpu,
        class_weights: None,
        stop: &stop,
        checkpoint_every: std::time::Duration::from_secs(3600),
    };
    let mut watch = Watch { checkpoints: Vec::new() };
    let outcome = fit(&mut network, data, &config, &mut watch, resume);
    let mut weights: Weights = network.vs.variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    match outcome {
        Ok(outcome) => (Ok(outcome.epochs), weights),
        Err(_) => (Err(watch.checkpoints.pop().expect("a stop leaves a checkpoint")), weights),
    }
}

#[test]
fn a_3d_unet_learns_on_patches_and_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (train_cases, validation, spacing) = stored(dir.path());
    let data = VolumePatches {
        train: Arc::from(train_cases),
        validation: Arc::from(validation),
        plan: PatchPlan {
            patch: PATCH,
            batch_size: 2,
            foreground_share: 0.5,
            seed: 42,
            iterations: 0,
            augment: Some(VolumeAugment::default()),
            centred: false,
        },
        labels: 3,
        whole_validation: None,
    };
    // 3 batches an epoch (6 cases, 2 a batch), 12 epochs
    let (epochs, whole) = train(&data, spacing, 12, None, None);
    let Ok(epochs) = epochs else { panic!("the whole run stopped") };
    // (this machine, with nnU-Net's augmentation: Dice + cross-entropy 1.89 -> 1.25, the
    // best validation Dice 0.70 -> 0.87; a patch without a label and without a
    // prediction of it scores 1, hence the start)
    let (first, last) = (&epochs[0], &epochs[11]);
    assert!(last.train_loss < 0.8 * first.train_loss, "{} -> {}", first.train_loss, last.train_loss);
    let before = first.val_dice.unwrap();
    let best = epochs.iter().filter_map(|e| e.val_dice).fold(0.0, f64::max);
    assert!(best > before + 0.1, "validation Dice {before} -> at best {best}");
    // the stop flag, asked before each epoch and after each batch, rises at its 6th ask:
    // after epoch 2's first batch; resumed from the checkpoint it left
    let (stopped, _) = train(&data, spacing, 12, Some(5), None);
    let Err(checkpoint) = stopped else { panic!("the run did not stop") };
    assert_eq!((checkpoint.progress.records.len(), checkpoint.progress.batches), (1, 1));
    let (resumed, weights) = train(&data, spacing, 12, None, Some(checkpoint));
    let Ok(resumed) = resumed else { panic!("the resumed run stopped") };
    assert_eq!(resumed.len(), 12);
    for ((name, a), (_, b)) in whole.iter().zip(&weights) {
        assert!(a.equal(b), "{name} differs after the resume");
    }
}

/// `case` cut to `size` `[z, y, x]` about its centre, image and labels alike.
fn cropped(case: &WorkingCase, size: [usize; 3]) -> WorkingCase {
    let cut = |volume: &Volume| Volume {
        voxels: WorkingCase { image: volume.clone(), ..case.clone() }.centred_block(size),
        shape: [size[2], size[1], size[0]],
        ..volume.clone()
    };
    WorkingCase { image: cut(&case.image), labels: case.labels.as_ref().map(cut), ..case.clone() }
}

#[test]
fn validating_a_whole_case_that_is_one_patch_gives_the_patch_validation() {
    // one validation case cut to the patch: the sliding window covers it with one window,
    // whose weights divide out, and the validation patches are that case as it is
    let dir = tempfile::tempdir().unwrap();
    let (train_cases, _, spacing) = stored(dir.path());
    let train_cases: Arc<[StoredCase]> = Arc::from(train_cases);
    let images = example();
    let split = images.split(&SplitSettings::default()).unwrap();
    let pre = split.fit(images.settings());
    let case = cropped(&images.working_case(split.validation[0], &pre).unwrap(), PATCH);
    assert!(case.labels.as_ref().unwrap().voxels.iter().any(|&v| v > 0.0), "the cut holds the organ");
    let whole_case = images.working_case(split.validation[0], &pre).unwrap();
    let keep = |case: &WorkingCase, index| -> Arc<[StoredCase]> {
        Arc::from(vec![StoredCase::keep(case, dir.path(), index).unwrap()])
    };
    let (one_patch, larger) = (keep(&case, 200), keep(&whole_case, 201));
    let data = |validation: &Arc<[StoredCase]>, whole_validation| VolumePatches {
        train: Arc::clone(&train_cases),
        validation: Arc::clone(validation),
        plan: PatchPlan {
            patch: PATCH,
            batch_size: 2,
            foreground_share: 0.5,
            seed: 42,
            iterations: 2,
            augment: None,
            centred: false,
        },
        labels: 3,
        whole_validation,
    };
    let window = SlidingWindow {
        patch: PATCH.map(|s| s as i64),
        overlap: 0.5,
        blend: Blend::Gaussian,
        mirror_axes: Vec::new(),
        batch: 2,
    };
    let epoch = |validation, whole: Option<&SlidingWindow>| {
        let (epochs, _) = train(&data(validation, whole.cloned()), spacing, 1, None, None);
        epochs.unwrap_or_else(|_| panic!("the run stopped")).remove(0)
    };
    let (p, w) = (epoch(&one_patch, None), epoch(&one_patch, Some(&window)));
    assert_eq!(p.train_loss, w.train_loss, "the same training");
    // the window's Gaussian weights divide out to within float32 rounding of the logits
    assert!((p.val_loss - w.val_loss).abs() <= 1e-5 * p.val_loss.abs(), "{} vs {}", p.val_loss, w.val_loss);
    assert_eq!(p.val_dice, w.val_dice);
    // a case larger than the patch: the windows cover all of it, the patches part of it
    let (p, w) = (epoch(&larger, None), epoch(&larger, Some(&window)));
    assert_ne!(p.val_loss, w.val_loss, "the whole case is validated, not its patches");
}
