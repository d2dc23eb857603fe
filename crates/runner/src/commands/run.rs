//! `radrun RECIPE` / `radrun run RECIPE`: trains every run of the plan not done yet.

use crate::cli::RunArgs;
use crate::error::RadrunError;
use crate::run::{Runner, Selection};

pub fn run(args: RunArgs) -> Result<(), RadrunError> {
    let plan = super::load_plan(&args.plan)?;
    let log = crate::log::init_logging();
    let mut reporter = crate::reporter::for_flags(args.quiet, args.json);
    let selection = match (args.index, args.run) {
        (Some(index), _) => Selection::Index(index),
        (None, Some(id)) => Selection::Id(id),
        (None, None) => Selection::All,
    };
    let mut runner = Runner { runs_root: args.runs, force: args.force, selection, reporter: reporter.as_mut(), log };
    runner.run_plan(&plan)?;
    Ok(())
}
