//! `radrun RECIPE` / `radrun run RECIPE`: trains every run of the plan not done yet.

use radrun_runner::cli::{Gpus, RunArgs};
use radrun_runner::cluster::jobs::Pool;
use radrun_runner::error::RadrunError;
use radrun_runner::run::Selection;

use crate::run::Runner;

pub fn run(args: RunArgs) -> Result<(), RadrunError> {
    let plan = radrun_runner::commands::load_plan(&args.plan)?;
    if plan.runs.iter().any(|run| run.settings.data.dims == 3) {
        // the volume pipeline reads, checks, summarises and plans the network (`radrun
        // plan`); the volume run itself (training, test masks, metrics) comes next
        return Err(RadrunError::Selection(format!(
            "{} reads volumes (data.dims = 3), which radrun can plan but not train yet: `radrun plan` shows the \
             cases, each run's preprocessing, patch and 3D U-Net levels; `radrun inspect` and `radrun dicom \
             series` read and convert volumes",
            plan.recipe_path.display()
        )));
    }
    let jobs = args.jobs.map_or(plan.jobs, usize::from);
    if jobs > 1 && args.index.is_none() && args.run.is_none() {
        let present = radrun_train::device::gpus().len();
        let gpus = match args.gpus {
            None | Some(Gpus::All) => (0..present).collect(),
            Some(Gpus::List(list)) => {
                if let Some(missing) = list.iter().find(|&&g| g >= present) {
                    return Err(RadrunError::Selection(format!(
                        "--gpus names GPU {missing}, but this machine has {present} (see `radrun doctor`)"
                    )));
                }
                list
            }
        };
        let pool = Pool {
            jobs,
            gpus,
            runs_root: &args.runs,
            set: &args.plan.set,
            force: args.force,
            quiet: args.quiet,
            json: args.json,
        };
        pool.run(&plan)?;
        return Ok(());
    }
    let log = radrun_runner::run::log::init_logging();
    let mut reporter = radrun_runner::run::reporter::for_flags(args.quiet, args.json);
    let selection = match (args.index, args.run) {
        (Some(index), _) => Selection::Index(index),
        (None, Some(id)) => Selection::Id(id),
        (None, None) => Selection::All,
    };
    let mut runner = Runner { runs_root: args.runs, force: args.force, selection, reporter: reporter.as_mut(), log };
    runner.run_plan(&plan)?;
    Ok(())
}
