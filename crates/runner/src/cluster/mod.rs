//! Sharing a plan's runs out to other processes: worker processes on this machine
//! (`jobs`, `radrun RECIPE --jobs N`) and Slurm job arrays (`slurm`, `radrun submit`).
//! Each worker or array task is an ordinary `radrun run RECIPE --index I` process that
//! claims its run through the store.
//!
//! May import: `run` (its events, tally and result writing), `recipe`, `store`; nothing
//! of `commands`. `run` does not import it: what a worker reads from its parent is
//! defined in `run::work`.

pub mod jobs;
pub mod slurm;
