//! PyTorch `.pth` state dicts. libtorch's own loader reads a `torch.save`d plain dict;
//! torchvision's files are OrderedDicts, some in the legacy (pre-zip) format, which it
//! cannot read. Those are re-saved as a plain dict by the Python of the torch venv
//! (`$RADRUN_VENV/bin/python`, else `python3`), with `weights_only=True` so no code in
//! the file runs, and then read.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Tensor;

const RESAVE: &str = "import sys, torch; \
    torch.save(dict(torch.load(sys.argv[1], map_location='cpu', weights_only=True)), sys.argv[2])";

fn python() -> PathBuf {
    std::env::var_os("RADRUN_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into())
}

/// Reads the named tensors of a `torch.save(state_dict)` file.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let direct = match Tensor::loadz_multi(path) {
        Ok(tensors) => return Ok(tensors),
        Err(e) => e.to_string().lines().next().unwrap_or_default().to_string(),
    };
    let plain = tempfile::Builder::new().suffix(".pth").tempfile().map_err(|e| e.to_string())?;
    let python = python();
    let converted = Command::new(&python).arg("-c").arg(RESAVE).arg(path).arg(plain.path()).output();
    match converted {
        Ok(out) if out.status.success() => Tensor::loadz_multi(plain.path()).map_err(|e| e.to_string()),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string(),
                Err(e) => format!("{}: {e}", python.display()),
            };
            Err(format!(
                "cannot read it as a PyTorch state dict (libtorch: {direct}; re-saving it with {python} failed: {why}); \
                 convert it to safetensors: python -c \"import torch, safetensors.torch as st; \
                 st.save_file(torch.load('{file}', weights_only=True), '{file}.safetensors')\"",
                file = path.display(),
                python = python.display(),
            ))
        }
    }
}
