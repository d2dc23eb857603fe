//! The radrun runner: reads recipes, expands sweeps into a plan of runs, drives each run
//! (data, model, training, evaluation) and owns the command line and the `runs/` layout.
//! See ARCHITECTURE.md for the flow recipe -> plan -> run -> run folder.

pub mod aggregate;
pub mod claim;
pub mod cli;
mod commands;
pub mod error;
pub mod evaluate;
pub mod gallery;
pub mod jobs;
pub mod log;
pub mod plan;
pub mod provenance;
pub mod recipe;
pub mod report;
pub mod reporter;
pub mod run;
pub mod run_dir;
pub mod settings;
pub mod signals;
pub mod slurm;
pub mod weights;

use std::process::ExitCode;

use clap::Parser;

pub use error::RadrunError;

/// Entry point of the binary: parses the command line, runs it, renders the error and
/// picks the exit code (see [`RadrunError::exit_code`]).
pub fn main() -> ExitCode {
    // `radrun plan | head`: end quietly when the reader goes away, as command-line tools
    // do, instead of panicking on the broken pipe (Rust ignores SIGPIPE by default)
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    if cli.csv_raw {
        run_dir::write_raw_csv_cells();
    }
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `radrun status` exits 4 while runs are still going: a state, not an error
            let prefix = if matches!(error, RadrunError::Unfinished { .. }) { "" } else { "error: " };
            eprintln!("{prefix}{error}");
            ExitCode::from(error.exit_code())
        }
    }
}
