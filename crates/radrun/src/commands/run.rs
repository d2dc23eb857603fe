//! `radrun RECIPE` / `radrun run RECIPE`: trains every run of the plan not done yet.

use radrun_runner::cli::{Gpus, RunArgs};
use radrun_runner::cluster::jobs::Pool;
use radrun_runner::error::RadrunError;
use radrun_runner::run::Selection;

use crate::run::Runner;

pub fn run(args: RunArgs) -> Result<(), RadrunError> {
    let plan = radrun_runner::commands::load_plan(&args.plan)?;
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
    let mut runner =
        Runner { runs_root: args.runs, force: args.force, selection, reporter: reporter.as_mut(), log, mlflow: None };
    runner.run_plan(&plan)?;
    Ok(())
}
