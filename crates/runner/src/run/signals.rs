//! SIGINT (Ctrl-C) and SIGTERM (what Slurm sends before it preempts or cancels a job):
//! the first asks the run in training to stop after its current batch, write its
//! checkpoint and mark itself interrupted; the process then exits with 128 + the
//! signal's number (130 for Ctrl-C). A second one exits at once: the last checkpoint
//! written stays valid, since every file is replaced atomically.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

struct Flags {
    /// Raised by the first signal; a second exits.
    raised: Arc<AtomicBool>,
    /// Which signal it was.
    signal: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Installs the handlers (once per process).
pub fn install() {
    FLAGS.get_or_init(|| {
        let flags = Flags { raised: Arc::new(AtomicBool::new(false)), signal: Arc::new(AtomicUsize::new(0)) };
        for signal in [SIGINT, SIGTERM] {
            // the order matters: the exit is armed before the flag is set
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flags.raised.clone());
            let _ = signal_hook::flag::register_usize(signal, flags.signal.clone(), signal as usize);
            let _ = signal_hook::flag::register(signal, flags.raised.clone());
        }
        flags
    });
}

/// The signal that asked the process to stop, if one did.
pub fn requested() -> Option<i32> {
    let flags = FLAGS.get()?;
    flags.raised.load(Ordering::SeqCst).then(|| flags.signal.load(Ordering::SeqCst) as i32)
}

/// The signal's name for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
