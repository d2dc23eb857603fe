//! The radrun runner: reads recipes, expands sweeps into a plan of runs, drives each run
//! (data, model, training, evaluation) and owns the command line and the `runs/` layout.
//! See ARCHITECTURE.md for the flow recipe -> plan -> run -> run folder and
//! the layers of its folders: `store` at the bottom, then `recipe`, `report`, `run`,
//! `cluster`, and `cli` with `commands` on top; no folder imports one above it.

pub mod cli;
pub mod cluster;
mod commands;
pub mod error;
pub mod recipe;
pub mod report;
pub mod run;
pub mod store;

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
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Err(error) = commands::check_first_word(&args) {
        eprintln!("{error}");
        return ExitCode::from(error.exit_code());
    }
    let cli = cli::Cli::parse();
    if cli.csv_raw {
        store::write_raw_csv_cells();
    }
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}
