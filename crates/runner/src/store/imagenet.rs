//! Pretrained backbone weights: where `model.weights = "imagenet"` looks (the radrun
//! cache), and what to do when a file is not there. Loading them into a network, and
//! `radrun weights fetch` and `import`, are radrun's (the libtorch half).

use std::path::PathBuf;

use radrun_settings::Backbone;

use super::io::cache_dir;

/// The file `model.weights = "imagenet"` reads for a backbone.
pub fn imagenet_file(backbone: Backbone) -> PathBuf {
    cache_dir().join("weights").join(format!("{}-imagenet.safetensors", backbone.name()))
}

/// What to do when the ImageNet file is not cached.
pub fn missing_imagenet_message(backbone: Backbone) -> String {
    let src = backbone.facts().weights;
    format!(
        "no ImageNet weights for {name} at {path}. Online: run `radrun weights fetch {name}`. Offline: \
         download {url} on another machine, then put it at {path} as safetensors (`radrun weights \
         import {name} FILE` converts a .pth), or set model.weights = \"none\" to train from scratch",
        name = backbone.name(),
        path = imagenet_file(backbone).display(),
        url = src.url,
    )
}
