//! Pretrained backbone weights on libtorch: loading a backbone's tensors into a network,
//! and `radrun weights fetch`, which downloads the official files (torchvision's, and
//! timm's on the Hugging Face hub), checks their SHA-256 and stores them as safetensors
//! where `model.weights = "imagenet"` looks (`radrun_runner::store::imagenet`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use radrun_models::Network;
use radrun_models::weights::{Missing, copy_into, read_tensors};
use radrun_runner::store::imagenet::{imagenet_file, missing_imagenet_message};
use radrun_runner::store::io::{cache_dir, write_atomic_with};
use radrun_settings::{Backbone, TransferSettings, Weights};
use sha2::{Digest, Sha256};

/// Loads the backbone weights a transfer recipe asks for (the head stays freshly
/// initialised); the path of a file is already resolved.
pub fn load_pretrained(network: &mut Network, settings: &TransferSettings) -> Result<()> {
    let path = match &settings.weights {
        Weights::None => return Ok(()),
        Weights::Imagenet => {
            let path = imagenet_file(settings.backbone);
            if !path.is_file() {
                bail!("{}", missing_imagenet_message(settings.backbone));
            }
            path
        }
        Weights::File(file) => file.clone(),
    };
    let tensors = read_tensors(&path)?;
    copy_into(&network.vs, tensors, &path, Missing::AllowUnder(&[radrun_models::transfer::HEAD]))?;
    tracing::info!("backbone weights loaded from {}", path.display());
    Ok(())
}

/// Copies a local weights file (.pth or .safetensors) into the cache as the backbone's
/// ImageNet file, after checking that its tensors fit the backbone.
pub fn import(backbone: Backbone, file: &Path) -> Result<PathBuf> {
    let tensors = read_tensors(file)?;
    let settings = TransferSettings { backbone, weights: Weights::None, ..Default::default() };
    let size = backbone.facts().minimum_input;
    let network =
        Network::build(&radrun_settings::ModelSettings::Transfer(settings), [3, size, size], 2, tch::Device::Cpu)?;
    let named: Vec<(String, tch::Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    copy_into(&network.vs, named, file, Missing::AllowUnder(&[radrun_models::transfer::HEAD]))?;
    let target = imagenet_file(backbone);
    let keep: Vec<(String, tch::Tensor)> =
        tensors.into_iter().filter(|(n, _)| network.vs.variables().contains_key(n)).collect();
    write_atomic_with(&target, |tmp| tch::Tensor::write_safetensors(&keep, tmp).map_err(std::io::Error::other))?;
    Ok(target)
}

/// Downloads the official weights of `backbone`, checks the SHA-256, and stores them
/// in the cache as safetensors.
pub fn fetch(backbone: Backbone, show_progress: bool) -> Result<PathBuf> {
    let src = backbone.facts().weights;
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_connect(Some(std::time::Duration::from_secs(30))).build().into();
    let response = agent
        .get(src.url)
        .call()
        .with_context(|| format!("cannot download {} (offline?). {}", src.url, missing_imagenet_message(backbone)))?;
    let expected = match src.sha256_prefix {
        Some(p) => p.to_string(),
        None => response
            .headers()
            .get("x-linked-etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string())
            .context("the hub did not send the file's SHA-256 (X-Linked-Etag); cannot verify the download")?,
    };
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bar =
        if show_progress { indicatif::ProgressBar::new(length.unwrap_or(0)) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    bar.set_message(format!("fetching {}", backbone.name()));
    let mut reader = response.into_body().into_reader();
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut chunk).context("download interrupted")?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if !digest.starts_with(&expected) {
        bail!("checksum mismatch for {}: expected SHA-256 {expected}..., got {digest}", src.url);
    }
    let dir = cache_dir().join("weights");
    std::fs::create_dir_all(&dir)?;
    let extension = if src.url.ends_with(".pth") { "pth" } else { "safetensors" };
    // removed when dropped, whatever happens
    let mut download = tempfile::Builder::new().suffix(&format!(".{extension}")).tempfile_in(&dir)?;
    std::io::Write::write_all(&mut download, &bytes)?;
    import(backbone, download.path())
}
