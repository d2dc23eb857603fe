//! `radrun plan RECIPE`: the runs a recipe expands to and the data summary; trains nothing.

use crate::cli::PlanCommand;
use crate::error::RadrunError;
use crate::recipe::plan::{DatasetError, Plan, display_value};
use crate::run::datasets::Datasets;

pub fn plan(args: &PlanCommand) -> Result<(), RadrunError> {
    let plan = super::load_plan(&args.plan)?;
    print_runs(&plan);
    if args.resolved {
        for run in &plan.runs {
            let text = toml::to_string(&run.settings).expect("settings serialize as TOML");
            println!("\n# run {}\n{text}", run.id);
        }
    }
    // every distinct split is made and checked for leakage; each dataset's summary is
    // printed once, with the first run's split
    // the image cache goes where `radrun run` looks by default
    let mut datasets = Datasets::new(&plan, std::path::Path::new("runs"));
    let mut checked = std::collections::HashSet::new();
    for run in &plan.runs {
        if !checked.insert((run.data_key(), run.settings.split)) {
            continue;
        }
        let (dataset, newly_loaded) =
            datasets.get(run).map_err(|source| DatasetError { recipe: plan.recipe_path.clone(), source })?;
        if let Some(loaded) = newly_loaded {
            println!("\n{}  images {}", dataset.summary, loaded.source);
        }
    }
    Ok(())
}

/// The table of runs: id and swept values.
fn print_runs(plan: &Plan) {
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
            print!("  {:<w$}", display_value(value), w = key.len());
        }
        println!();
    }
}
