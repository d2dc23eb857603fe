//! End-to-end tests of the `radrun` binary: what a user types and sees. One test binary
//! (as uv and nextest do); snapshots (insta) of rendered errors with temporary paths
//! redacted; tiny datasets copied from the bundled example into temporary folders.

mod architecture;
mod claims;
mod common;
mod controls;
mod dicom;
mod disk_full;
mod docs;
mod export;
mod hostile;
mod init;
mod input_errors;
mod jobs;
mod manuscript;
mod predict;
mod recipes;
mod report;
mod resume;
mod rigor;
mod runs;
mod schema;
mod shell;
mod slurm;
mod track;
mod volume_datasets;
mod volume_runs;
mod volumes;
