//! A volume classification run's test evaluation (`model.kind = "cnn3d"`): each
//! validation and test case prepared as its training cases were (the run's
//! preprocessing), cropped or padded about its centre to the network's input, and its
//! class probabilities (softmax) scored as a 2D classification's are: evaluation.json,
//! predictions.csv, the patient-bootstrap intervals and, for two classes, the operating
//! point chosen on the validation cases.

use anyhow::{Context, Result};
use rayon::prelude::*;

use radrun_data::volume_dataset::CaseFacts;
use radrun_metrics::evaluate::{Calibrate, Classified, Decisions, Evaluation, classify};
use radrun_models::Network;
use radrun_train::predict::volume_class_probabilities;

use super::volumes::VolumeRun;
use super::work::{RunWork, taken_over, write_subgroups};

impl RunWork<'_> {
    /// Classifies the test cases (and, for two classes, the validation cases), writes
    /// the evaluation files and the headline in the status.
    pub(super) fn evaluate_volume_classes(
        &mut self,
        network: &Network,
        volumes: &VolumeRun,
        device: tch::Device,
    ) -> Result<()> {
        let classes: Vec<String> = volumes.outputs.values().cloned().collect();
        let batch = self.run.settings.train.batch_size as usize;
        let probabilities = |cases: &[&CaseFacts]| case_probabilities(network, volumes, cases, batch, device);
        let split = &volumes.split;
        let test = Classified {
            files: split.test.iter().map(|case| case.source.clone()).collect(),
            truth: classes_of(&split.test)?,
            probabilities: probabilities(&split.test)?,
        };
        // the threshold of a two-class run, and a temperature, are fitted on the
        // validation cases
        let validation = match classes.len() == 2 || self.run.settings.eval.calibrate == Calibrate::Temperature {
            true => (classes_of(&split.validation)?, probabilities(&split.validation)?),
            false => Default::default(),
        };
        let groups: Vec<Option<&str>> = split.test.iter().map(|case| Some(case.group.as_str())).collect();
        let scored = classify(
            &classes,
            test,
            Decisions::FromValidation(Box::new(|| validation)),
            &groups,
            &self.run.settings.eval,
        )?;
        let evaluation = Evaluation::Classification(Box::new(scored));
        let _held = self.claim.hold().ok_or_else(taken_over)?;
        self.dir.write_evaluation(&evaluation)?;
        write_subgroups(self.dir, &evaluation, &groups, &volumes.levels, &self.run.settings.eval)?;
        self.status.test = evaluation.headline();
        self.status.test_intervals = evaluation.headline_intervals();
        Ok(())
    }
}

/// Each case's class.
fn classes_of(cases: &[&CaseFacts]) -> Result<Vec<usize>> {
    cases.iter().map(|case| case.class.with_context(|| format!("case {} has no class", case.name))).collect()
}

/// The class probabilities of `cases`, `batch` at a time (each batch prepared in
/// parallel).
fn case_probabilities(
    network: &Network,
    volumes: &VolumeRun,
    cases: &[&CaseFacts],
    batch: usize,
    device: tch::Device,
) -> Result<Vec<Vec<f32>>> {
    let size = volumes.input.patch.map(|side| side as usize);
    let mut rows = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(batch.max(1)) {
        let blocks = chunk
            .par_iter()
            .map(|case| volumes.images.working_case(case, &volumes.preprocessing).map(|w| w.centred_block(size)))
            .collect::<Result<Vec<_>, _>>()?;
        rows.extend(volume_class_probabilities(&[network], &blocks, volumes.input.input_shape(), device));
    }
    Ok(rows)
}
