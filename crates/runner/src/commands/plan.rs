//! `radrun plan RECIPE`: the runs a recipe expands to and the data summary; trains nothing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use radrun_data::volume_dataset::{VolumeImages, case_table, read_volumes};
use radrun_data::volume_summary::VolumeSummary;

use crate::cli::PlanCommand;
use crate::error::RadrunError;
use crate::recipe::plan::{DatasetError, Plan, display_value};
use crate::recipe::volume_input::VolumeInput;
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
    if plan.runs.iter().any(|run| run.settings.data.dims == 3) {
        return plan_volumes(&plan, args.cases);
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

/// A volume recipe: each dataset read once (its summary printed), then each run's split
/// and the preprocessing its training cases give.
fn plan_volumes(plan: &Plan, cases: bool) -> Result<(), RadrunError> {
    let failed = |source| DatasetError { recipe: plan.recipe_path.clone(), source };
    let mut read: HashMap<String, VolumeImages> = HashMap::new();
    for run in &plan.runs {
        let data = &run.settings.data;
        let images = match read.entry(run.data_key()) {
            Entry::Occupied(seen) => seen.into_mut(),
            Entry::Vacant(slot) => {
                let images = slot.insert(read_volumes(data).map_err(failed)?);
                println!("\n{}", VolumeSummary::of(images));
                if cases {
                    print!("{}", case_table(images));
                }
                images
            }
        };
        let split = images.split(&run.settings.split).map_err(failed)?;
        let preprocessing = split.fit(data);
        println!(
            "  run {}: {} training, {} validation ({}), {} test cases; {preprocessing}",
            run.id,
            split.train.len(),
            split.validation.len(),
            split.how,
            split.test.len(),
        );
        let s = &run.settings;
        let input = VolumeInput::resolve(&s.model, data, (&s.train, &s.eval), &preprocessing)
            .map_err(|e| plan.setting_error(run, e))?;
        print!("{input}");
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
