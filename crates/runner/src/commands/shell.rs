//! `radrun completions SHELL` and `radrun man`: the shell completion script
//! (clap_complete) and the manual page (clap_mangen), both generated from the command
//! line's definition ([`Cli`]), so that neither can drift from `--help`; `radrun schema`
//! prints the recipes' JSON Schema the same way.

use std::io::Write;
use std::path::Path;

use radrun_data::paths::path_text;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::RadrunError;
use crate::store::{WriteError, write_atomic};

pub fn completions(shell: Shell) -> Result<(), RadrunError> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "radrun", &mut out);
    print(&out)
}

/// radrun's page on standard output, or (`dir`) it and every command's page written
/// there, each path printed.
pub fn man(dir: Option<&Path>) -> Result<(), RadrunError> {
    // built, its `help` sub-command left out: it has no page
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let Some(dir) = dir else { return print(&page(command)?) };
    std::fs::create_dir_all(dir).map_err(|source| WriteError { path: dir.to_path_buf(), source })?;
    let mut commands = vec![command];
    while let Some(command) = commands.pop() {
        commands.extend(command.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let path = dir.join(clap_mangen::Man::new(command.clone()).get_filename());
        write_atomic(&path, &page(command)?)?;
        print(format!("{}\n", path_text(&path)).as_bytes())?;
    }
    Ok(())
}

/// One command's page, in roff.
fn page(command: clap::Command) -> Result<Vec<u8>, RadrunError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command).render(&mut out).map_err(printing)?;
    Ok(out)
}

/// Writes to standard output; a reader that stopped (`| head`) ends it quietly.
pub fn print(bytes: &[u8]) -> Result<(), RadrunError> {
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(printing),
    }
}

fn printing(source: std::io::Error) -> RadrunError {
    RadrunError::Disk(WriteError { path: "standard output".into(), source })
}
