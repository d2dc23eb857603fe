//! The radrun runner, without libtorch: reads recipes, expands sweeps into a plan of
//! runs, owns the command line, the `runs/` layout and everything read from it (status,
//! reports, comparisons, Slurm arrays, `--jobs` workers), and runs the commands that do
//! not need a tensor. Training a run, `predict`, `export`, `reproduce`, `weights` and
//! `doctor` are the `radrun` crate's (its `radrun-torch` binary, which links libtorch).
//! See ARCHITECTURE.md for the flow recipe -> plan -> run -> run folder and the layers
//! of its folders: `store` at the bottom, then `recipe`, `report`, `run`, `cluster`, and
//! `cli` with `commands` on top; no folder imports one above it.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod error;
pub mod recipe;
pub mod report;
pub mod run;
pub mod store;

use std::process::ExitCode;

use clap::Parser;

pub use error::RadrunError;

/// Entry point of `radrun`: parses the command line and runs the commands that do not
/// need libtorch; those that do (training, predict, export, reproduce, weights, doctor)
/// are handed to `radrun-torch` beside it, which replaces this process (same process id,
/// signals and arguments). So `radrun status`, `plan`, `dicom inspect`... start at once,
/// without loading libtorch and its CUDA libraries (seconds and hundreds of MB).
pub fn main() -> ExitCode {
    entry(|cli| {
        if commands::needs_libtorch(&cli.command) {
            return Err(hand_to_radrun_torch());
        }
        let command = cli.command.expect("no command means training, which needs libtorch");
        commands::dispatch_light(command)
    })
}

/// Parses the command line, runs it with `run`, renders the error and picks the exit
/// code (see [`RadrunError::exit_code`]).
pub fn entry(run: impl FnOnce(cli::Cli) -> Result<(), RadrunError>) -> ExitCode {
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Replaces this process by `radrun-torch` (beside this binary) with the same arguments;
/// returns only the error of a failed start.
fn hand_to_radrun_torch() -> RadrunError {
    use std::os::unix::process::CommandExt;
    let torch = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("radrun-torch"),
        Err(error) => return RadrunError::Installation(format!("cannot find radrun's own binary: {error}")),
    };
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "radrun".into());
    let error = std::process::Command::new(&torch).arg0(name).args(args).exec();
    RadrunError::Installation(format!(
        "cannot start {} ({error}): radrun hands training, predict, export, reproduce, weights and \
         doctor to it, and needs it beside itself; build both with scripts/setup.sh (or cargo build --release)",
        radrun_data::paths::path_text(&torch)
    ))
}
