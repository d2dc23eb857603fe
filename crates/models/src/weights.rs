//! Weight files: reading named tensors (safetensors, or PyTorch `.pth` zip archives) and
//! copying them into a network's variables with checks that name the file and the tensor.

use std::collections::HashMap;
use std::path::Path;

use tch::{Tensor, nn};

use crate::Error;

/// Reads every named tensor of a weights file.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, Error> {
    let err = |message: String| Error::Weights { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(err("file not found".into()));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => Tensor::read_safetensors(path).map_err(|e| err(e.to_string())),
        "pth" | "pt" | "bin" => crate::pth::read(path).map_err(err),
        _ => Err(err("unknown weights format: use a .safetensors file (or a PyTorch .pth state dict)".into())),
    }
}

/// What to do with network variables that the file lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing<'a> {
    /// Every variable must be in the file.
    Error,
    /// Variables under these prefixes may be absent (a new head on a pretrained backbone).
    AllowUnder(&'a [&'a str]),
}

/// Copies the file's tensors into the variables of the same name. Tensors the network
/// does not have (a classifier that was replaced, `num_batches_tracked`) are ignored.
pub fn copy_into(
    vs: &nn::VarStore,
    tensors: Vec<(String, Tensor)>,
    path: &Path,
    missing: Missing,
) -> Result<(), Error> {
    let err = |message: String| Error::Weights { path: path.to_path_buf(), message };
    let file: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in variables {
            match file.get(&name) {
                Some(value) => {
                    if value.size() != var.size() {
                        return Err(err(format!(
                            "tensor `{name}` has shape {:?} but the network expects {:?} (a file for another \
                             model, image channel count or number of classes?)",
                            value.size(),
                            var.size()
                        )));
                    }
                    var.f_copy_(value).map_err(|e| err(format!("cannot copy `{name}`: {e}")))?;
                }
                None => {
                    let allowed = match missing {
                        Missing::Error => false,
                        Missing::AllowUnder(prefixes) => prefixes.iter().any(|p| name.starts_with(&format!("{p}."))),
                    };
                    if !allowed {
                        return Err(err(format!(
                            "has no tensor `{name}`, which the network needs (was it saved from another model?)"
                        )));
                    }
                }
            }
        }
        Ok(())
    })
}
