//! What radrun keeps on disk, and nothing above it: a run's folder and every file in it
//! (`run_dir`), its `status.json` (`status`), the claim that lets processes and machines
//! share a runs folder (`claim`), provenance and dataset fingerprints (`provenance`), a
//! recipe's summary.csv (`summary`) and aggregates (`aggregate`), external validations
//! (`external`), where the ImageNet weight files of radrun's cache are (`imagenet`), and
//! a run's TensorBoard event files (`tensorboard`). The files that hold tensors
//! (checkpoints, weights) are written and read by the `radrun` crate, through this
//! crate's writer. Every file goes through `io`, the one atomic writer at the bottom, except the event
//! files, which TensorBoard reads as they grow: they are appended to, a record at a time.
//!
//! May import: `radrun_data`, `radrun_metrics`, `radrun_settings`; nothing else of the
//! runner (the recipe, the run loop, the cluster and the report all read and write
//! through it).

pub mod aggregate;
pub mod claim;
pub mod external;
pub mod imagenet;
pub mod io;
pub mod provenance;
pub mod run_dir;
pub mod status;
pub mod summary;
pub mod tensorboard;

pub use io::{
    WriteError, cache_dir, host_name, read_cell, write_atomic, write_atomic_with, write_csv, write_png,
    write_raw_csv_cells,
};
pub use run_dir::{CheckpointMeta, EpochsSoFar, RunDir, WeightsFile};
pub use status::{SlurmTask, State, Status};
pub use summary::write_summary;
