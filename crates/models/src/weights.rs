//! Weight files: reading named tensors (safetensors, or PyTorch `.pth` zip archives),
//! writing safetensors with a checksum, and copying tensors into a network's variables
//! with checks that name the file and the tensor.
//!
//! Every safetensors file radrun writes carries a SHA-256 of its tensors in its header:
//! [`radrun_settings::weights_file`] defines it and checks it without libtorch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensorError, View};
use tch::{Tensor, nn};

use radrun_settings::weights_file::{CHECKSUM_KEY, Checked, Checksum, WeightsError, checked_views};

use crate::Error;

/// Reads every named tensor of a weights file; a safetensors file is checked against its
/// checksum when it has one.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, Error> {
    let err = |message: String| Error::from(WeightsError::Unreadable { path: path.to_path_buf(), message });
    if !path.is_file() {
        return Err(err("file not found".into()));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => read_safetensors(path).map(|(tensors, _)| tensors),
        "pth" | "pt" | "bin" => crate::pth::read(path).map_err(err),
        _ => Err(err("unknown weights format: use a .safetensors file (or a PyTorch .pth state dict)".into())),
    }
}

/// Reads every named tensor of a safetensors file, after checking them against the
/// checksum in its header when it has one.
pub fn read_safetensors(path: &Path) -> Result<(Vec<(String, Tensor)>, Checked), Error> {
    let err = |message: String| Error::from(WeightsError::Unreadable { path: path.to_path_buf(), message });
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let (views, checked) = checked_views(path, &bytes)?;
    let tensors: Vec<(String, Tensor)> = views
        .into_iter()
        .map(|(name, view)| match Tensor::try_from(view) {
            Ok(tensor) => Ok((name, tensor)),
            Err(e) => Err(err(format!("tensor `{name}`: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok((tensors, checked))
}

/// Writes named tensors (on any device, in any layout: each is written contiguous, NCHW
/// for a channels-last kernel) as safetensors, with their checksum in the header. Not
/// atomic by itself: the runner writes through its atomic writer.
pub fn write_safetensors<S: AsRef<str>, T: AsRef<Tensor>>(tensors: &[(S, T)], path: &Path) -> Result<(), Error> {
    let err = |message: String| Error::from(WeightsError::Unreadable { path: path.to_path_buf(), message });
    let mut stored = tensors
        .iter()
        .map(|(name, tensor)| {
            let name = name.as_ref();
            Stored::new(tensor.as_ref()).map(|s| (name, s)).map_err(|e| err(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    stored.sort_by(|a, b| a.0.cmp(b.0));
    let mut checksum = Checksum::default();
    for (name, s) in &stored {
        // each tensor copied out once here and once more when written: never all at once
        checksum.add(name, s.dtype, &s.shape, &s.data());
    }
    let metadata = HashMap::from([(CHECKSUM_KEY.to_string(), checksum.finish())]);
    safetensors::serialize_to_file(stored, &Some(metadata), path).map_err(|e| match e {
        // "No space left on device", not its debug form
        SafeTensorError::IoError(io) => err(io.to_string()),
        other => err(other.to_string()),
    })
}

/// A tensor as safetensors writes it: its bytes are copied to the host when asked for.
struct Stored<'a> {
    tensor: &'a Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl<'a> Stored<'a> {
    fn new(tensor: &'a Tensor) -> Result<Self, tch::TchError> {
        let dtype = Dtype::try_from(tensor.f_kind()?)?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        Ok(Self { tensor, dtype, shape })
    }
}

impl View for Stored<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = vec![0; self.data_len()];
        // a dense tensor of a kind safetensors has (checked in `new`) always copies
        self.tensor.copy_data_u8(&mut bytes, self.tensor.numel());
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
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
    let err = |message: String| Error::from(WeightsError::Unreadable { path: path.to_path_buf(), message });
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use safetensors::tensor::SafeTensors;
    use tch::{Device, Kind};

    use super::*;

    /// Tensors of three dtypes and shapes, a scalar among them.
    fn tensors() -> Vec<(&'static str, Tensor)> {
        vec![
            ("a", Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3])),
            ("b", Tensor::from_slice(&[1i64, 2, 3])),
            ("c", Tensor::from(2.5f64)),
        ]
    }

    /// `tensors()` written with a checksum into a temporary folder, and the bytes.
    fn written(dir: &tempfile::TempDir) -> (PathBuf, Vec<u8>) {
        let path = dir.path().join("w.safetensors");
        write_safetensors(&tensors(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// `bytes` with the one occurrence of `from` replaced by `to`, of the same length.
    fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from}"));
        let mut out = bytes.to_vec();
        out[at..at + to.len()].copy_from_slice(to.as_bytes());
        out
    }

    fn damaged(path: &Path, bytes: &[u8]) -> bool {
        std::fs::write(path, bytes).unwrap();
        matches!(read_safetensors(path), Err(Error::File(WeightsError::Damaged { .. })))
    }

    #[test]
    fn written_tensors_read_back_equal_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(&dir);
        let (read, checked) = read_safetensors(&path).unwrap();
        assert_eq!(checked, Checked::Verified);
        assert_eq!(read.len(), 3);
        for (name, want) in tensors() {
            let (_, got) = read.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!((got.kind(), got.size()), (want.kind(), want.size()), "{name}");
            assert!(got.equal(&want), "{name}");
        }
    }

    #[test]
    fn a_flipped_byte_in_any_tensor_or_its_checksum_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(&dir);
        let (header_len, header) = SafeTensors::read_metadata(&bytes).unwrap();
        for (name, info) in header.tensors() {
            let (start, end) = info.data_offsets;
            for at in [start, end - 1] {
                let mut flipped = bytes.clone();
                flipped[8 + header_len + at] ^= 0x01;
                assert!(damaged(&path, &flipped), "a flipped byte of `{name}` at {at}");
            }
        }
        let sum = &header.metadata().as_ref().unwrap()[CHECKSUM_KEY];
        let other: String = sum.chars().rev().collect();
        assert!(damaged(&path, &replaced(&bytes, sum, &other)), "another checksum");
    }

    #[test]
    fn a_shape_or_dtype_changed_in_the_header_is_found() {
        // both keep each tensor's length in bytes, which is all the format itself checks
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(&dir);
        assert!(damaged(&path, &replaced(&bytes, "\"shape\":[2,3]", "\"shape\":[3,2]")), "a transposed shape");
        assert!(damaged(&path, &replaced(&bytes, "\"b\":{\"dtype\":\"I64\"", "\"b\":{\"dtype\":\"F64\"")), "a dtype");
    }

    #[test]
    fn a_file_without_a_checksum_is_read_unchecked() {
        // as torchvision, timm and radrun before checksums write them
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.safetensors");
        Tensor::write_safetensors(&tensors(), &path).unwrap();
        let (read, checked) = read_safetensors(&path).unwrap();
        assert_eq!((read.len(), checked), (3, Checked::Unchecked));
    }
}
