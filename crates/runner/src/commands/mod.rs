//! The commands that run without libtorch, one file each ([`dispatch_light`] picks one),
//! and what every command shares: which ones need libtorch ([`needs_libtorch`]: those
//! are radrun's, the libtorch half), the check of the first word, usage errors and plan
//! loading.
//!
//! The top of the runner: may import every other folder (`cli` for the arguments,
//! `recipe`, `run`, `cluster`, `report`, `store`, `error`); nothing in the runner
//! imports it.

mod clean;
mod compare;
mod dicom;
mod init;
mod inspect;
mod plan;
mod shell;
mod status;
mod submit;
mod track;

use std::path::Path;

use crate::cli::{Cli, Command, PlanArgs};
use crate::error::RadrunError;
use crate::recipe::{Origin, RecipeError, SetFlags};

/// Whether the command needs libtorch: training (the default command), predict,
/// evaluate, export, reproduce, weights and doctor. `radrun` runs every other command itself, without
/// loading libtorch, and hands these to `radrun-torch` (see ARCHITECTURE.md).
pub fn needs_libtorch(command: &Option<Command>) -> bool {
    match command {
        None => true,
        Some(command) => match command {
            Command::Run(_)
            | Command::Predict(_)
            | Command::Evaluate(_)
            | Command::Export(_)
            | Command::Reproduce(_)
            | Command::Weights(_)
            | Command::Doctor { .. } => true,
            Command::Plan(_)
            | Command::Status(_)
            | Command::Clean(_)
            | Command::Submit(_)
            | Command::Report { .. }
            | Command::Methods { .. }
            | Command::Compare(_)
            | Command::Inspect { .. }
            | Command::Dicom(_)
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Schema
            | Command::Init(_)
            | Command::Track(_) => false,
        },
    }
}

/// Runs a command that does not need libtorch (`radrun` itself); the others are
/// [`needs_libtorch`]'s, and never reach here from `radrun`.
pub fn dispatch_light(command: Command) -> Result<(), RadrunError> {
    match command {
        Command::Plan(args) => plan::plan(&args),
        Command::Status(args) => status::status(&args),
        Command::Clean(args) => clean::clean(&args),
        Command::Submit(args) => submit::submit(&args),
        Command::Report { folder } => {
            let path = crate::report::write_report(&folder)?;
            println!("{}", radrun_data::paths::path_text(&path));
            Ok(())
        }
        Command::Methods { folder } => {
            let path = crate::report::write_methods(&folder)?;
            println!("{}", radrun_data::paths::path_text(&path));
            Ok(())
        }
        Command::Compare(args) => compare::compare(&args),
        Command::Dicom(command) => dicom::dicom(command),
        Command::Inspect { files, json } => inspect::inspect(&files, json),
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { dir } => shell::man(dir.as_deref()),
        Command::Init(args) => init::init(&args),
        Command::Track(crate::cli::TrackCommand::Sync { folder }) => track::sync_folder(&folder),
        Command::Schema => shell::print(crate::recipe::schema::recipe_schema().as_bytes()),
        Command::Run(_)
        | Command::Predict(_)
        | Command::Evaluate(_)
        | Command::Export(_)
        | Command::Reproduce(_)
        | Command::Weights(_)
        | Command::Doctor { .. } => unreachable!("a command that needs libtorch goes to radrun-torch"),
    }
}

/// Refuses a first word that names no command and no file (`radrun evaluate --help` took
/// `evaluate` for a recipe and printed the general help, exit 0), naming the commands and
/// the nearest one. A word that looks like a path (with a `/` or a `.`) is left to the
/// recipe reader, which names the file it cannot read.
pub fn check_first_word(args: &[std::ffi::OsString]) -> Result<(), RadrunError> {
    let Some(word) = args.first().and_then(|w| w.to_str()) else { return Ok(()) };
    if word.starts_with('-') || word.contains(['/', '.']) || Path::new(word).exists() {
        return Ok(());
    }
    let command = <Cli as clap::CommandFactory>::command();
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).chain(["help"]).collect();
    if names.contains(&word) {
        return Ok(());
    }
    let hint = crate::recipe::did_you_mean(word, names.iter().copied())
        .map(|name| format!("; did you mean `radrun {name}`?"))
        .unwrap_or_default();
    Err(usage_error(
        Path::new("(command line)"),
        format!(
            "`{word}` is neither a command nor a recipe file{hint} (the commands: {}; a recipe is a .toml file)",
            names.join(", ")
        ),
    ))
}

/// A command-line mistake, rendered like a recipe error.
pub fn usage_error(file: &Path, message: String) -> RadrunError {
    RecipeError { file: file.to_path_buf(), origin: Origin::File { line: None }, message }.into()
}

/// Reads, expands and checks the recipe of `run` and `plan`.
pub fn load_plan(args: &PlanArgs) -> Result<crate::recipe::plan::Plan, RadrunError> {
    let Some(recipe) = args.recipe.as_deref() else {
        return Err(usage_error(
            Path::new("(none)"),
            "give a recipe file, e.g. `radrun recipes/chest_6class.toml` (see `radrun --help`)".into(),
        ));
    };
    let set = SetFlags::parse(&args.set).map_err(|message| usage_error(recipe, message))?;
    Ok(crate::recipe::plan::plan(recipe, &set)?)
}
