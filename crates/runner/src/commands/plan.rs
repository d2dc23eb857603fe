//! `radrun plan RECIPE`: the runs a recipe expands to and the data summary; trains nothing.

use std::collections::BTreeSet;

use anyhow::Context;

use crate::cli::PlanCommand;
use crate::error::RadrunError;
use crate::plan::{Plan, display_value};

pub fn plan(args: &PlanCommand) -> Result<(), RadrunError> {
    let plan = super::load_plan(&args.plan)?;
    print_runs(&plan);
    if args.resolved {
        for run in &plan.runs {
            let text = toml::to_string(&run.settings).context("cannot write the resolved recipe")?;
            println!("\n# run {}\n{text}", run.id);
        }
    }
    let mut seen = BTreeSet::new();
    for run in &plan.runs {
        if seen.insert(serde_json::to_string(&run.settings.data).expect("settings serialize")) {
            let dataset = radrun_data::load(&run.settings.data)
                .map_err(|source| RadrunError::Dataset { recipe: plan.recipe_path.clone(), source })?;
            println!("\n{}", dataset.summary);
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
