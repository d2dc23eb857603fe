//! Weight files checked without libtorch: whether a file a recipe names is one radrun can
//! read, and the checksum radrun writes into every safetensors file.
//!
//! Every safetensors file radrun writes (a run's `best.safetensors`, `last.safetensors`
//! and `checkpoint.safetensors`) carries a SHA-256 of its tensors in its own header, in
//! the format's standard metadata (`"__metadata__": {"radrun.sha256": "<hex>"}`). It
//! covers, tensor by tensor in name order, the name, the dtype, the shape and the bytes:
//! all the header says of a tensor but where its bytes lie, so a flipped byte in the data
//! and a dtype or shape changed in the header are both found. Kept inside the file, the
//! checksum is replaced with the tensors by the one rename of an atomic write (a sidecar
//! file could fall out of step with them), and other readers (PyTorch's `safetensors`)
//! ignore it. Reading checks it whenever the file has one: a mismatch is
//! [`WeightsError::Damaged`]. A file without one (torchvision's, timm's, one written by a radrun
//! before checksums) is read as it is, and [`Checked::Unchecked`] says so.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use radrun_data::paths::path_text;

/// A weights file radrun cannot use.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights file {}: {message}", path_text(path))]
    Unreadable { path: PathBuf, message: String },
    /// A safetensors file whose tensors do not match the checksum radrun wrote with them.
    #[error(
        "weights file {} is damaged: its tensors do not match the SHA-256 written with them (`{}` in its \
         header), so the file changed after radrun wrote it (a disk, copy or transfer error); copy it again \
         from a good copy, or train the run that wrote it again",
        path_text(path),
        CHECKSUM_KEY
    )]
    Damaged { path: PathBuf },
}

/// The key of a safetensors file's metadata that holds the SHA-256 of its tensors.
pub const CHECKSUM_KEY: &str = "radrun.sha256";

/// Whether tensors read from a file were checked against a checksum written with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The file's checksum matches its tensors.
    Verified,
    /// The file has no checksum (not written by radrun, or by a radrun before
    /// checksums): its tensors are as the file holds them, unchecked.
    Unchecked,
}

/// Checks, without libtorch, that a weights file is one radrun can read: a safetensors
/// file's header, tensors and checksum; a PyTorch state dict's container (a zip archive
/// as `torch.save` writes, or the legacy pickle), whose tensors libtorch reads when
/// training starts. Planning a recipe checks its `model.weights` so: `radrun plan` and
/// `radrun status` do not load libtorch.
pub fn check_file(path: &Path) -> Result<(), WeightsError> {
    let err = |message: String| WeightsError::Unreadable { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(err("file not found".into()));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            checked_views(path, &bytes).map(|_| ())
        }
        "pth" | "pt" | "bin" => {
            let mut head = [0u8; 4];
            let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head));
            match read.map_err(|e| err(e.to_string()))? {
                4.. if head == *b"PK\x03\x04" || head[..2] == [0x80, 0x02] => Ok(()),
                _ => Err(err("cannot be read as a PyTorch state dict: neither a zip archive (as torch.save \
                              writes) nor a legacy pickle; convert it to safetensors"
                    .into())),
            }
        }
        _ => Err(err("unknown weights format: use a .safetensors file (or a PyTorch .pth state dict)".into())),
    }
}

/// A safetensors file's named tensors as views of its bytes, sorted by name, checked
/// against the checksum in its header when it has one.
pub fn checked_views<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(Vec<(String, TensorView<'a>)>, Checked), WeightsError> {
    let err = |message: String| WeightsError::Unreadable { path: path.to_path_buf(), message };
    let (header_len, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| err(format!("cannot be read as safetensors ({e}): the file is damaged or of another format")))?;
    // the header's offsets were checked against the file's length: every slice is in it
    let data = &bytes[8 + header_len..];
    let written = header.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY));
    let mut infos: Vec<_> = header.tensors().into_iter().collect();
    infos.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checksum = Checksum::default();
    let mut views = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let (start, end) = info.data_offsets;
        let view = TensorView::new(info.dtype, info.shape.clone(), &data[start..end])
            .map_err(|e| err(format!("tensor `{name}`: {e}")))?;
        if written.is_some() {
            checksum.add(&name, info.dtype, &info.shape, view.data());
        }
        views.push((name, view));
    }
    let checked = match written {
        None => Checked::Unchecked,
        Some(written) if *written != checksum.finish() => {
            return Err(WeightsError::Damaged { path: path.to_path_buf() });
        }
        Some(_) => Checked::Verified,
    };
    Ok((views, checked))
}

/// The SHA-256 of a file's tensors, given in name order: of each, its name, dtype, shape
/// and bytes, every part preceded by its length so that no two files hash alike by
/// shifting bytes from one part to the next.
#[derive(Default)]
pub struct Checksum(Sha256);

impl Checksum {
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) {
        let dtype = format!("{dtype:?}");
        for part in [name.as_bytes(), dtype.as_bytes()] {
            self.count(part.len());
            self.0.update(part);
        }
        self.count(shape.len());
        for &dimension in shape {
            self.count(dimension);
        }
        self.count(data.len());
        self.0.update(data);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    pub fn finish(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}
