//! The log: warnings on stderr, and everything from `info` into the training run's own
//! `train.log` (none between runs).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The per-run log file the `tracing` subscriber writes to (none between runs).
#[derive(Clone, Default)]
pub struct RunLog(Arc<Mutex<Option<File>>>);

impl RunLog {
    /// Sends the log to `path` (appending), or nowhere with `None`.
    pub fn set(&self, path: Option<&Path>) {
        let file = path.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        *self.0.lock().expect("log lock") = file;
    }
}

/// Writer handed to tracing: the current run's log file, if any.
pub struct RunLogWriter(Arc<Mutex<Option<File>>>);

impl Write for RunLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().expect("log lock").as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock().expect("log lock").as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLogWriter;
    fn make_writer(&'a self) -> RunLogWriter {
        RunLogWriter(self.0.clone())
    }
}

/// Installs logging: warnings on stderr (`RADRUN_LOG` overrides, e.g. `RADRUN_LOG=debug`),
/// everything from `info` into the current run's `train.log`.
pub fn init_logging() -> RunLog {
    let log = RunLog::default();
    let stderr_filter = EnvFilter::try_from_env("RADRUN_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // colour codes only on a terminal, not in a Slurm output file
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_target(false)
        .with_filter(EnvFilter::new("info,dicom=warn"));
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
    log
}
