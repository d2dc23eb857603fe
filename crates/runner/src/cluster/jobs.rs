//! `radrun RECIPE --jobs N`: up to N runs of a plan at a time, each trained by its own
//! `radrun run RECIPE --index I` worker process. A worker has its own CUDA context, so a
//! crash or an out-of-memory error ends its run only, never the sweep; its run folder,
//! claim and checkpoint are the same as a lone process's (a worker is one). The parent
//! places each run on the GPU running the fewest workers, gives each worker its share of
//! the CPU cores, shows every active run's progress, retries a run that ran out of GPU
//! memory once alone, and writes the recipe's summary and report at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};

use radrun_metrics::EpochRecord;

use crate::error::RadrunError;
use crate::recipe::plan::Plan;
use crate::run::reporter::{Event, Reporter};
use crate::run::{THREADS_VARIABLE, Tally, WORKERS_VARIABLE, select_pending};
use crate::store::{RunDir, State, Status};

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

/// A sweep in progress: the runs waiting, the workers training, and what ended so far.
struct Sweep<'p> {
    plan: &'p Plan,
    /// The recipe's runs folder.
    folder: PathBuf,
    /// This program, which each worker runs.
    radrun: PathBuf,
    /// CPU threads per worker.
    threads: usize,
    /// Runs not started yet, the next one last.
    queue: Vec<usize>,
    tally: Tally,
    active: Vec<Worker>,
    /// Runs that ran out of GPU memory next to others, to run again alone.
    retry_alone: Vec<usize>,
    /// Runs queued to run again alone once already: never twice.
    retried: Vec<usize>,
    /// Whether a stop signal was passed on to the workers.
    forwarded: bool,
    sender: Sender<Message>,
    reporter: Box<dyn Reporter>,
}

impl Pool<'_> {
    /// Trains the plan's pending runs; fails when a run failed.
    pub fn run(&self, plan: &Plan) -> Result<Tally, RadrunError> {
        crate::run::signals::install();
        let mut reporter = crate::run::reporter::for_flags(self.quiet, self.json);
        let folder = self.runs_root.join(&plan.recipe_name);
        let (mut queue, tally) = select_pending(plan, &folder, self.force)?;
        let radrun = std::env::current_exe()
            .map_err(|source| RadrunError::Process { what: "find radrun's own path".into(), source })?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / self.jobs.max(1)).max(1);
        reporter.report(&Event::PoolStarted { plan, runs: queue.len(), jobs: self.jobs, gpus: &self.gpus, threads });
        queue.reverse(); // popped from the end: plan order
        let (sender, receiver) = channel();
        let mut sweep = Sweep {
            plan,
            folder,
            radrun,
            threads,
            queue,
            tally,
            active: Vec::new(),
            retry_alone: Vec::new(),
            retried: Vec::new(),
            forwarded: false,
            sender,
            reporter,
        };
        self.drive(&mut sweep, &receiver);
        let Sweep { folder, tally, queue, retry_alone, mut reporter, .. } = sweep;
        crate::run::write_results(plan, &folder)?;
        reporter.report(&Event::PlanFinished { tally, folder: &folder });
        crate::run::outcome(plan, &folder, tally, !queue.is_empty() || !retry_alone.is_empty())
    }

    /// Starts workers and takes in what they say until none is active and none is to
    /// start; once a stop signal arrives, starts no more and passes it on to the workers.
    fn drive(&self, sweep: &mut Sweep, receiver: &Receiver<Message>) {
        loop {
            let stopping = crate::run::signals::requested();
            if stopping.is_none() {
                self.start_next(sweep);
            } else if !sweep.forwarded {
                // workers are in their own process group: a terminal's Ctrl-C reaches
                // the parent only, which passes it on once
                for worker in &sweep.active {
                    // SAFETY: kill(2) with a child's pid and a signal number
                    unsafe { libc::kill(worker.child.id() as i32, stopping.unwrap_or(libc::SIGTERM)) };
                }
                sweep.forwarded = true;
            }
            if sweep.active.is_empty() {
                break;
            }
            // woken every second to pass a signal on promptly
            let Ok(message) = receiver.recv_timeout(std::time::Duration::from_secs(1)) else { continue };
            match message {
                Message::Line(index, line) => self.take_line(sweep, index, &line),
                Message::Closed(index) => self.close(sweep, index),
            }
        }
    }

    /// Starts queued runs, in plan order, while fewer than `jobs` workers are active.
    fn start_next(&self, sweep: &mut Sweep) {
        let mut next = Vec::new();
        while sweep.active.len() + next.len() < self.jobs
            && let Some(index) = sweep.queue.pop()
        {
            next.push(index);
        }
        // a run that ran out of memory goes again once the others are done, alone
        if sweep.active.is_empty() && next.is_empty() && !sweep.retry_alone.is_empty() {
            next.push(sweep.retry_alone.remove(0));
        }
        for index in next {
            self.start(sweep, index);
        }
    }

    /// Starts run `index`'s worker on the GPU running the fewest, or counts the run
    /// failed when no worker starts.
    fn start(&self, sweep: &mut Sweep, index: usize) {
        let plan = sweep.plan;
        let run = &plan.runs[index];
        let gpu = self.least_loaded(&sweep.active);
        match self.spawn(&sweep.radrun, plan, index, sweep.threads, gpu, sweep.sender.clone()) {
            Ok(child) => {
                sweep.reporter.report(&Event::WorkerStarted { run, pid: child.id(), gpu });
                sweep.active.push(Worker { index, gpu, child, started: false, skipped: None });
            }
            Err(e) => {
                let error = format!("cannot start a worker ({}): {e}", sweep.radrun.display());
                sweep.reporter.report(&Event::WorkerFailed { run, reason: &error });
                sweep.tally.failed += 1;
            }
        }
    }

    /// Notes what a worker's line says of its run (started, or skipped and why), and
    /// shows the line.
    fn take_line(&self, sweep: &mut Sweep, index: usize, line: &str) {
        let value = serde_json::from_str::<serde_json::Value>(line).unwrap_or_default();
        if let Some(worker) = sweep.active.iter_mut().find(|w| w.index == index) {
            match value["event"].as_str() {
                Some("run_started") => worker.started = true,
                Some("run_skipped") => worker.skipped = value["reason"].as_str().map(str::to_string),
                _ => {}
            }
        }
        self.show(sweep.plan, index, line, &value, sweep.reporter.as_mut());
    }

    /// Counts and reports the run of the worker whose output closed; a run that ran out
    /// of GPU memory next to others is queued to run again alone, once.
    fn close(&self, sweep: &mut Sweep, index: usize) {
        let position = sweep.active.iter().position(|w| w.index == index).expect("an active worker");
        let worker = sweep.active.remove(position);
        let plan = sweep.plan;
        let run = &plan.runs[index];
        let dir = sweep.folder.join(&run.id);
        match ended(worker, &dir) {
            Ended::Skipped(reason) => {
                // done or claimed by another process in the meantime
                sweep.tally.skipped += 1;
                let (index, total) = (index + 1, plan.runs.len());
                // with --json the worker said so itself
                if !self.json {
                    sweep.reporter.report(&Event::RunSkipped { index, total, run, reason: &reason });
                }
            }
            Ended::Lost(why) => {
                sweep.tally.failed += 1;
                sweep.reporter.report(&Event::WorkerFailed { run, reason: &why });
            }
            Ended::Over(status) if self.jobs > 1 && out_of_memory(&status) && !sweep.retried.contains(&index) => {
                sweep.reporter.report(&Event::RetryAlone { run });
                sweep.retried.push(index);
                sweep.retry_alone.push(index);
            }
            Ended::Over(status) => {
                match status.state {
                    State::Done => sweep.tally.done += 1,
                    State::Interrupted => sweep.tally.interrupted += 1,
                    State::Running | State::Failed => sweep.tally.failed += 1,
                }
                if !self.json {
                    sweep.reporter.report(&Event::RunFinished { run, status: &status, folder: &dir });
                }
            }
        }
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
    ) -> std::io::Result<Child> {
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
        let mut child = command.spawn()?;
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
            Some("epoch") => {
                if let Ok(record) = serde_json::from_value::<EpochRecord>(value.clone()) {
                    let total_epochs = value["epochs"].as_u64().unwrap_or(0) as u32;
                    reporter.report(&Event::WorkerEpoch { run, record: &record, total_epochs });
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
