//! The commands that need libtorch, one file each; [`dispatch`] picks one, and hands
//! every other command to the runner's (`radrun_runner::commands::dispatch_light`).

mod doctor;
mod evaluate;
mod evaluate_volumes;
mod export;
mod predict;
mod predict_volumes;
mod reproduce;
mod run;
mod weights;

use radrun_runner::cli::{Cli, Command};
use radrun_runner::error::RadrunError;

/// Runs the command the user typed (`radrun-torch`: every command).
pub fn dispatch(cli: Cli) -> Result<(), RadrunError> {
    match cli.command {
        None => run::run(cli.run),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Predict(args)) => predict::predict(&args),
        Some(Command::Evaluate(args)) => evaluate::evaluate(&args),
        Some(Command::Export(args)) => export::export(&args),
        Some(Command::Doctor { json }) => Ok(doctor::run(json)?),
        Some(Command::Weights(command)) => weights::weights(command),
        Some(Command::Reproduce(args)) => reproduce::reproduce(&args),
        Some(command) => radrun_runner::commands::dispatch_light(command),
    }
}
