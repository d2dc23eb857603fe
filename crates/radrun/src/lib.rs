//! radrun's two binaries and the half of the runner that runs on libtorch. `radrun`
//! (`main.rs`) is the runner's light entry point and links no libtorch; the commands that
//! need it (training a plan's runs, `predict`, `export`, `reproduce`, `weights`,
//! `doctor`) are handed to `radrun-torch`, whose [`main_torch`] runs them here: `run`
//! (training each run and recording its outcome), `checkpoint` (the tensors of a run
//! folder), `imagenet` (pretrained backbones), `gallery` (Grad-CAM). Everything else is
//! the `radrun_runner` crate's, which this one builds on. See ARCHITECTURE.md.

mod checkpoint;
mod commands;
mod gallery;
mod imagenet;
pub mod run;

use std::process::ExitCode;

/// Entry point of `radrun-torch`: every command, libtorch loaded at start-up.
pub fn main_torch() -> ExitCode {
    radrun_runner::entry(commands::dispatch)
}
