//! What of a run folder holds tensors: the checkpoint training resumes from, and the
//! best and last weights. `checkpoint.safetensors` holds the tensors and the progress
//! record (as a byte tensor), so that one rename replaces the whole state, with the
//! checksum of both in its header (see `radrun_settings::weights_file`);
//! `checkpoint.json` repeats the progress for people and `radrun status`, and nothing
//! resumes from it.

use radrun_data::paths::path_text;
use radrun_models::{Network, weights};
use radrun_runner::store::io::{plain_io_error, write_atomic, write_atomic_with};
use radrun_runner::store::{CheckpointMeta, RunDir, WeightsFile, WriteError};
use radrun_settings::WeightsError;
use radrun_settings::weights_file::Checked;
use radrun_train::Progress;
use tch::Tensor;

/// The name of the progress record inside checkpoint.safetensors.
const CHECKPOINT_PROGRESS: &str = "radrun/checkpoint.json";

/// A checkpoint as read back from a run folder.
pub struct SavedCheckpoint {
    pub meta: CheckpointMeta<Progress>,
    pub tensors: Vec<(String, Tensor)>,
    /// Whether a checksum vouched for it (a checkpoint of a radrun before checksums has
    /// none).
    pub checked: Checked,
}

/// Writes the training state into `dir` (see the module's doc).
pub fn write(dir: &RunDir, meta: &CheckpointMeta<Progress>, tensors: &[(String, Tensor)]) -> Result<(), WriteError> {
    let json = serde_json::to_vec_pretty(meta).expect("plain data serializes");
    let progress = Tensor::from_slice(&json);
    // the writer puts kernels laid out channels-last in NCHW order, as every file holds them
    let mut named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    named.push((CHECKPOINT_PROGRESS, &progress));
    write_atomic_with(&dir.checkpoint_path(), |tmp| {
        weights::write_safetensors(&named, tmp).map_err(|e| plain_io_error(e.to_string()))
    })?;
    write_atomic(&dir.path().join("checkpoint.json"), &json)
}

/// The checkpoint of `dir`, if there is one: `Err` says why it cannot be used, as a
/// clause ("it cannot be read (...)", "<path> is damaged (...)"). Its tensors and
/// progress record are checked against the checksum written with them; a checkpoint
/// without one (written by a radrun before checksums) is used unchecked, and says so.
pub fn read(dir: &RunDir) -> Result<Option<SavedCheckpoint>, String> {
    let path = dir.checkpoint_path();
    if !path.exists() {
        return Ok(None);
    }
    let unreadable = |why: String| format!("it cannot be read ({}: {why})", path_text(&path));
    let (mut tensors, checked) = match weights::read_safetensors(&path) {
        Ok(read) => read,
        Err(radrun_models::Error::File(WeightsError::Damaged { .. })) => {
            return Err(format!(
                "{} is damaged (its tensors do not match the SHA-256 written with them)",
                path_text(&path)
            ));
        }
        Err(e) => return Err(format!("it cannot be read ({e})")),
    };
    let at = tensors
        .iter()
        .position(|(n, _)| n == CHECKPOINT_PROGRESS)
        .ok_or_else(|| unreadable("it holds no progress record".into()))?;
    let (_, progress) = tensors.swap_remove(at);
    let bytes = Vec::<u8>::try_from(&progress).map_err(|e| unreadable(e.to_string()))?;
    let meta = serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("progress record: {e}")))?;
    Ok(Some(SavedCheckpoint { meta, tensors, checked }))
}

/// The network's weights as `dir`'s best or last safetensors.
pub fn write_weights(dir: &RunDir, which: WeightsFile, network: &Network) -> Result<(), WriteError> {
    write_atomic_with(&dir.weights_path(which), |tmp| {
        network.write_weights(tmp).map_err(|e| plain_io_error(e.to_string()))
    })
}
