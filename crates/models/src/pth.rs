//! PyTorch `.pth` state dicts (the zip archives `torch.save` writes), read through
//! libtorch's own loader.

use std::path::Path;

use tch::Tensor;

/// Reads the named tensors of a `torch.save(state_dict)` file.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    Tensor::loadz_multi(path).map_err(|e| {
        format!(
            "cannot read it as a PyTorch state dict ({e}); convert it to safetensors with \
             `python -c \"import torch, safetensors.torch as st; st.save_file(torch.load('{0}'), '{0}.safetensors')\"`",
            path.display()
        )
    })
}
