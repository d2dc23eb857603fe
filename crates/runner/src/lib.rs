//! The radrun runner: reads recipes, expands sweeps into a plan of runs, drives each run
//! (data, model, training, evaluation) and owns the command line and the `runs/` layout.

pub mod cli;
pub mod doctor;
pub mod evaluate;
pub mod outputs;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod run;
pub mod weights;

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Parser;

use crate::cli::{Cli, Command, PlanArgs, RunArgs, WeightsCommand};
use crate::recipe::{RecipeError, SetFlags};
use crate::report::Mode;

/// Exit codes: 0 all good; 1 a run failed; 2 the recipe or command line is wrong;
/// 3 the environment is (libtorch, files).
pub mod exit {
    pub const RUN_FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
}

/// Entry point of the binary: parses the command line, runs it, renders errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = if error.downcast_ref::<RecipeError>().is_some() { exit::BAD_INPUT } else { exit::ENVIRONMENT };
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn recipe_path(args: &PlanArgs) -> Result<&std::path::Path> {
    args.recipe.as_deref().ok_or_else(|| {
        anyhow!(RecipeError {
            file: "(none)".into(),
            origin: recipe::Origin::File { line: None },
            message: "give a recipe file, e.g. `radrun recipes/chest_6class.toml` (see `radrun --help`)".into(),
        })
    })
}

fn load_plan(args: &PlanArgs) -> Result<plan::Plan> {
    let set = SetFlags::parse(&args.set).map_err(|message| RecipeError {
        file: args.recipe.clone().unwrap_or_default(),
        origin: recipe::Origin::File { line: None },
        message,
    })?;
    Ok(plan::plan(recipe_path(args)?, &set)?)
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        None => run_command(cli.run),
        Some(Command::Run(args)) => run_command(args),
        Some(Command::Plan(args)) => {
            let plan = load_plan(&args.plan)?;
            print_plan(&plan, args.resolved)?;
            Ok(0)
        }
        Some(Command::Doctor { json }) => {
            doctor::run(json)?;
            Ok(0)
        }
        Some(Command::Weights(command)) => weights_command(command),
    }
}

fn run_command(args: RunArgs) -> Result<u8> {
    let plan = load_plan(&args.plan)?;
    let log = report::init_logging();
    let options =
        run::RunOptions { runs_root: args.runs.clone(), force: args.force, mode: Mode::choose(args.quiet, args.json) };
    if options.mode != Mode::Json {
        eprintln!(
            "{}: {} run(s) -> {}",
            plan.recipe_path.display(),
            plan.runs.len(),
            args.runs.join(&plan.recipe_name).display()
        );
    }
    let tally = run::run_plan(&plan, &options, &log)?;
    let folder = args.runs.join(&plan.recipe_name);
    match options.mode {
        Mode::Json => report::emit(serde_json::json!({
            "event": "finished", "done": tally.done, "skipped": tally.skipped, "failed": tally.failed,
            "summary": folder.join("summary.csv"),
        })),
        _ => eprintln!(
            "\n{} done, {} skipped, {} failed. Results: {} (summary.csv ranks the runs)",
            tally.done,
            tally.skipped,
            tally.failed,
            folder.display()
        ),
    }
    Ok(if tally.failed > 0 { exit::RUN_FAILED } else { 0 })
}

fn print_plan(plan: &plan::Plan, resolved: bool) -> Result<()> {
    println!("Recipe {}: {} run(s)", plan.recipe_path.display(), plan.runs.len());
    let width = plan.runs.iter().map(|r| r.id.len()).max().unwrap_or(6).max(6);
    print!("  {:<width$}", "run id");
    for key in &plan.swept_keys {
        print!("  {key}");
    }
    println!();
    for run in &plan.runs {
        print!("  {:<width$}", run.id);
        for ((key, value), _) in run.swept.iter().zip(&plan.swept_keys) {
            print!("  {:<w$}", plan::display_value(value), w = key.len());
        }
        println!();
    }
    if resolved {
        for run in &plan.runs {
            println!("\n# run {}\n{}", run.id, toml::to_string(&run.recipe)?);
        }
    }
    let mut seen = Vec::new();
    for run in &plan.runs {
        let key = serde_json::to_string(&run.recipe.data)?;
        if !seen.contains(&key) {
            seen.push(key);
            let dataset = radrun_data::load(&run.recipe.data)
                .with_context(|| format!("dataset of {}", plan.recipe_path.display()))?;
            println!("\n{}", dataset.summary);
        }
    }
    Ok(())
}

fn parse_backbone(name: &str) -> Result<radrun_models::Backbone> {
    radrun_models::Backbone::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| {
        let names: Vec<&str> = radrun_models::Backbone::ALL.iter().map(|b| b.name()).collect();
        let hint = recipe::did_you_mean(name, names.iter().copied())
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        anyhow!(RecipeError {
            file: "(command line)".into(),
            origin: recipe::Origin::File { line: None },
            message: format!("unknown backbone \"{name}\"{hint} (one of {})", names.join(", ")),
        })
    })
}

fn weights_command(command: WeightsCommand) -> Result<u8> {
    match command {
        WeightsCommand::List => {
            for b in radrun_models::Backbone::ALL {
                let file = weights::imagenet_file(b);
                let state = if file.is_file() { "cached" } else { "not cached" };
                println!("{:<14} {state:<11} {}  (from {})", b.name(), file.display(), weights::source(b).url);
            }
        }
        WeightsCommand::Fetch { backbone } => {
            let path = weights::fetch(parse_backbone(&backbone)?, true)?;
            println!("stored {}", path.display());
        }
        WeightsCommand::Import { backbone, file } => {
            let path = weights::import(parse_backbone(&backbone)?, &file)?;
            println!("stored {}", path.display());
        }
    }
    Ok(0)
}
