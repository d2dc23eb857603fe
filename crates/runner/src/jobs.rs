//! `radrun RECIPE --jobs N`: up to N runs of a plan at a time, each trained by its own
//! `radrun run RECIPE --index I` worker process. A worker has its own CUDA context, so a
//! crash or an out-of-memory error ends its run only, never the sweep; its run folder,
//! claim and checkpoint are the same as a lone process's (a worker is one). The parent
//! places each run on the GPU running the fewest workers, gives each worker its share of
//! the CPU cores, shows every active run's progress, retries a run that ran out of GPU
//! memory once alone, and writes the recipe's summary and report at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};

use anyhow::anyhow;
use radrun_train::EpochRecord;

use crate::error::RadrunError;
use crate::plan::Plan;
use crate::reporter::{Event, Reporter, epoch_line};
use crate::run::{Tally, select_pending};
use crate::run_dir::{RunDir, State, Status};

/// The environment variable that gives a worker its libtorch CPU threads (a recipe's
/// `train.threads` above 0 wins).
pub const THREADS_VARIABLE: &str = "RADRUN_WORKER_THREADS";
/// How many workers train at once (each then keeps less of a dataset in memory: see
/// `data.cache`).
pub const WORKERS_VARIABLE: &str = "RADRUN_WORKERS";

/// How to share out a plan's runs.
pub struct Pool<'a> {
    pub jobs: usize,
    /// GPU indices to place runs on; empty: none (CPU).
    pub gpus: Vec<usize>,
    pub runs_root: &'a Path,
    pub set: &'a [String],
    pub force: bool,
    pub quiet: bool,
    pub json: bool,
}

/// What a worker's stdout reader tells the parent.
enum Message {
    Line(usize, String),
    Closed(usize),
}

struct Worker {
    index: usize,
    gpu: Option<usize>,
    child: Child,
    /// The worker's own word on its run: it started it, or skipped it (and why).
    started: bool,
    skipped: Option<String>,
}

impl Pool<'_> {
    /// Trains the plan's pending runs; fails when a run failed.
    pub fn run(&self, plan: &Plan) -> Result<Tally, RadrunError> {
        crate::signals::install();
        let mut reporter = crate::reporter::for_flags(self.quiet, self.json);
        let folder = self.runs_root.join(&plan.recipe_name);
        let (mut queue, mut tally) = select_pending(plan, &folder, self.force)?;
        let radrun = std::env::current_exe()
            .map_err(|e| RadrunError::Environment(anyhow!("cannot find radrun's own path: {e}")))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / self.jobs.max(1)).max(1);
        if !self.quiet && !self.json {
            let gpus = match self.gpus.len() {
                0 => String::new(),
                n => format!(" on {n} GPU(s)"),
            };
            eprintln!(
                "{} run(s) of {} to train, up to {} at a time{gpus}, {threads} CPU thread(s) each",
                queue.len(),
                plan.recipe_path.display(),
                self.jobs
            );
        }
        queue.reverse(); // popped from the end: plan order
        let (sender, receiver) = channel();
        let mut active: Vec<Worker> = Vec::new();
        let mut retry_alone: Vec<usize> = Vec::new();
        let mut retried: Vec<usize> = Vec::new();
        let mut forwarded = false;
        loop {
            let stopping = crate::signals::requested();
            if stopping.is_none() {
                let mut next = Vec::new();
                while active.len() + next.len() < self.jobs
                    && let Some(index) = queue.pop()
                {
                    next.push(index);
                }
                // a run that ran out of memory goes again once the others are done, alone
                if active.is_empty() && next.is_empty() && !retry_alone.is_empty() {
                    next.push(retry_alone.remove(0));
                }
                for index in next {
                    let gpu = self.least_loaded(&active);
                    match self.spawn(&radrun, plan, index, threads, gpu, sender.clone()) {
                        Ok(child) => {
                            if !self.quiet && !self.json {
                                let place = gpu.map_or(String::new(), |g| format!(" on GPU {g}"));
                                eprintln!("{}: started (worker {}{place})", plan.runs[index].id, child.id());
                            }
                            active.push(Worker { index, gpu, child, started: false, skipped: None });
                        }
                        Err(e) => {
                            eprintln!("  {}: FAILED: {e}", plan.runs[index].id);
                            tally.failed += 1;
                        }
                    }
                }
            } else if !forwarded {
                // workers are in their own process group: a terminal's Ctrl-C reaches
                // the parent only, which passes it on once
                for worker in &active {
                    // SAFETY: kill(2) with a child's pid and a signal number
                    unsafe { libc::kill(worker.child.id() as i32, stopping.unwrap_or(libc::SIGTERM)) };
                }
                forwarded = true;
            }
            if active.is_empty() {
                break;
            }
            // woken every second to pass a signal on promptly
            let message = match receiver.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(message) => message,
                Err(_) => continue,
            };
            match message {
                Message::Line(index, line) => {
                    let value = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
                    if let Some(worker) = active.iter_mut().find(|w| w.index == index) {
                        match value["event"].as_str() {
                            Some("run_started") => worker.started = true,
                            Some("run_skipped") => worker.skipped = value["reason"].as_str().map(str::to_string),
                            _ => {}
                        }
                    }
                    self.show(plan, index, &line, &value, reporter.as_mut());
                }
                Message::Closed(index) => {
                    let position = active.iter().position(|w| w.index == index).expect("an active worker");
                    let worker = active.remove(position);
                    let run = &plan.runs[index];
                    let dir = folder.join(&run.id);
                    match ended(worker, &dir) {
                        Ended::Skipped(reason) => {
                            // done or claimed by another process in the meantime
                            tally.skipped += 1;
                            let (index, total) = (index + 1, plan.runs.len());
                            // with --json the worker said so itself
                            if !self.json {
                                reporter.report(&Event::RunSkipped { index, total, run, reason: &reason });
                            }
                        }
                        Ended::Lost(why) => {
                            tally.failed += 1;
                            eprintln!("  {}: FAILED: {why}", run.id);
                        }
                        Ended::Over(status) if self.jobs > 1 && out_of_memory(&status) && !retried.contains(&index) => {
                            if !self.quiet && !self.json {
                                eprintln!(
                                    "  {}: out of GPU memory next to other runs; it will run again alone",
                                    run.id
                                );
                            }
                            retried.push(index);
                            retry_alone.push(index);
                        }
                        Ended::Over(status) => {
                            match status.state {
                                State::Done => tally.done += 1,
                                State::Interrupted => tally.interrupted += 1,
                                State::Running | State::Failed => tally.failed += 1,
                            }
                            if !self.json {
                                reporter.report(&Event::RunFinished { run, status: &status, folder: &dir });
                            }
                        }
                    }
                }
            }
        }
        crate::run::write_results(plan, &folder)?;
        reporter.report(&Event::PlanFinished { tally, folder: &folder });
        crate::run::outcome(plan, &folder, tally, !queue.is_empty() || !retry_alone.is_empty())
    }

    /// The GPU with the fewest active workers (the lowest index among equals).
    fn least_loaded(&self, active: &[Worker]) -> Option<usize> {
        self.gpus.iter().copied().min_by_key(|g| active.iter().filter(|w| w.gpu == Some(*g)).count())
    }

    fn spawn(
        &self,
        radrun: &Path,
        plan: &Plan,
        index: usize,
        threads: usize,
        gpu: Option<usize>,
        sender: Sender<Message>,
    ) -> Result<Child, RadrunError> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(radrun);
        command.arg("run").arg(&plan.recipe_path).arg("--index").arg(index.to_string());
        command.arg("--runs").arg(self.runs_root).arg("--json");
        for set in self.set {
            command.arg("--set").arg(set);
        }
        if self.force {
            command.arg("--force");
        }
        command.env(THREADS_VARIABLE, threads.to_string()).env("OMP_NUM_THREADS", threads.to_string());
        command.env(WORKERS_VARIABLE, self.jobs.to_string());
        if let Some(gpu) = gpu {
            // CUDA numbers the GPUs this process may see: pass on the entry of its own list
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            let entry = visible
                .as_deref()
                .and_then(|list| list.split(',').nth(gpu).map(|e| e.trim().to_string()))
                .unwrap_or_else(|| gpu.to_string());
            command.env("CUDA_VISIBLE_DEVICES", entry);
        }
        command.stdout(Stdio::piped()).stdin(Stdio::null()).process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| RadrunError::Environment(anyhow!("cannot start a worker ({}): {e}", radrun.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(Message::Line(index, line));
            }
            let _ = sender.send(Message::Closed(index));
        });
        Ok(child)
    }

    /// A worker's JSON line as this process shows it: as is with --json, else its
    /// epochs and notes with the run's id (its result comes from its status).
    fn show(&self, plan: &Plan, index: usize, line: &str, value: &serde_json::Value, reporter: &mut dyn Reporter) {
        let run = &plan.runs[index];
        match value["event"].as_str() {
            // each worker's own one-run tally is left out: the pool reports the whole one
            Some("finished") => {}
            _ if self.json => println!("{line}"),
            Some("epoch") if !self.quiet => {
                if let Ok(record) = serde_json::from_value::<EpochRecord>(value.clone()) {
                    let total = value["epochs"].as_u64().unwrap_or(0) as u32;
                    eprintln!("  {}: {}", run.id, epoch_line(&record, total));
                }
            }
            Some("note") => reporter.report(&Event::Note { run, message: value["message"].as_str().unwrap_or("") }),
            _ => {}
        }
    }
}

/// How a worker's run ended, as the pool counts it.
enum Ended {
    /// The worker skipped it: done, or claimed by another process, meanwhile.
    Skipped(String),
    /// The worker ended without training it, or left no status.
    Lost(String),
    /// Trained: its status says how it ended.
    Over(Box<Status>),
}

fn ended(mut worker: Worker, dir: &Path) -> Ended {
    let exit = worker.child.wait();
    if let Some(reason) = worker.skipped {
        return Ended::Skipped(reason);
    }
    match (worker.started, RunDir::new(dir.to_path_buf()).status()) {
        (true, Some(status)) => Ended::Over(Box::new(status)),
        (true, None) => Ended::Lost(format!("its worker left no status.json ({exit:?})")),
        (false, _) => Ended::Lost(format!("its worker ended before the run started ({exit:?})")),
    }
}

fn out_of_memory(status: &Status) -> bool {
    status.state == State::Failed && status.error.as_deref().is_some_and(|e| e.contains("out of memory"))
}
