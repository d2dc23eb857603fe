//! The datasets of a plan, decoded once per distinct `[data]` in this process and shared
//! by its runs (each splits them its own way), kept in memory or in the image cache
//! within this process's memory budget. Volume datasets are read once too, but only
//! their facts are kept: each run reads its cases' voxels again onto its working grid.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use radrun_data::volume_dataset::{VolumeImages, read_volumes};
use radrun_data::{CachePlace, Dataset, Images, ImagesSource};

use super::WORKERS_VARIABLE;
use crate::recipe::plan::{Plan, PlannedRun};

/// Datasets decoded in this process, shared by the runs whose `[data]` is the same (each
/// run splits them its own way: folds), and dropped after the last run that uses them.
pub struct Datasets {
    loaded: HashMap<String, Arc<Images>>,
    /// Volume datasets read (their facts; voxels are read again per run).
    volumes: HashMap<String, Arc<VolumeImages>>,
    /// For each data key, the index of the last run of the plan that uses it.
    last_use: HashMap<String, usize>,
    cache: CachePlace,
}

/// How a dataset came to be in this process: see [`Datasets::get`].
pub struct Loaded {
    pub seconds: f64,
    pub source: ImagesSource,
}

impl Datasets {
    /// Datasets for `plan`'s runs, whose image cache files (`data.cache`) go in
    /// `runs_root/.image-cache`.
    pub fn new(plan: &Plan, runs_root: &Path) -> Self {
        let last_use = plan.runs.iter().enumerate().map(|(i, run)| (run.data_key(), i)).collect();
        let cache = cache_place(runs_root);
        Self { loaded: HashMap::new(), volumes: HashMap::new(), last_use, cache }
    }

    /// The dataset of `run`, split as its `[split]` says and checked for leakage; with
    /// how it was loaded when that happened now (the first run on this `[data]`).
    pub fn get(&mut self, run: &PlannedRun) -> Result<(Dataset, Option<Loaded>), radrun_data::Error> {
        let key = run.data_key();
        let (images, loaded) = match self.loaded.get(&key) {
            Some(images) => (images.clone(), None),
            None => {
                let started = Instant::now();
                let images = Arc::new(radrun_data::discover(&run.settings.data)?.load_cached(&self.cache)?);
                self.loaded.insert(key, images.clone());
                let source = images.source().clone();
                tracing::info!("images {source}");
                (images, Some(Loaded { seconds: started.elapsed().as_secs_f64(), source }))
            }
        };
        Ok((images.split(&run.settings.split)?, loaded))
    }

    /// The volume dataset of `run`, read when no run before it read the same `[data]`;
    /// with the seconds reading took when it happened now.
    pub fn volumes(&mut self, run: &PlannedRun) -> Result<(Arc<VolumeImages>, Option<f64>), radrun_data::Error> {
        let key = run.data_key();
        if let Some(images) = self.volumes.get(&key) {
            return Ok((images.clone(), None));
        }
        let started = Instant::now();
        let images = Arc::new(read_volumes(&run.settings.data)?);
        self.volumes.insert(key, images.clone());
        Ok((images, Some(started.elapsed().as_secs_f64())))
    }

    /// Frees the datasets no run after `index` needs.
    pub fn release_after(&mut self, index: usize) {
        let last_use = &self.last_use;
        self.loaded.retain(|key, _| last_use.get(key).is_some_and(|&last| last > index));
        self.volumes.retain(|key, _| last_use.get(key).is_some_and(|&last| last > index));
    }
}

/// Where the image cache files of the runs under `runs_root` go
/// (`runs_root/.image-cache`), and the memory a dataset may take before `data.cache =
/// "auto"` keeps it on disk.
pub fn cache_place(runs_root: &Path) -> CachePlace {
    CachePlace { dir: runs_root.join(".image-cache"), memory_budget: memory_budget() }
}

/// The memory a dataset may take before `data.cache = "auto"` puts it in an image cache
/// file: a quarter of what this process may use (the machine's memory, or less when its
/// control group or its Slurm job limits it), shared among the workers of `--jobs`.
fn memory_budget() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let machine = read("/proc/meminfo").and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    let slurm = |var: &str| std::env::var(var).ok()?.parse::<u64>().ok().filter(|&mb| mb > 0).map(|mb| mb << 20);
    let cpus = std::env::var("SLURM_CPUS_ON_NODE").ok().and_then(|n| n.parse::<u64>().ok());
    let per_cpu = slurm("SLURM_MEM_PER_CPU").zip(cpus);
    let limits = [machine, control_group_limit(), slurm("SLURM_MEM_PER_NODE"), per_cpu.map(|(mb, cpus)| mb * cpus)];
    let workers = std::env::var(WORKERS_VARIABLE).ok().and_then(|v| v.parse::<u64>().ok());
    let usable = limits.into_iter().flatten().min();
    usable.map_or(u64::MAX, |usable| usable / 4 / workers.unwrap_or(1).max(1))
}

/// The tightest memory limit of this process's control group and its ancestors (cgroup
/// v2, then v1), if any ("max" and v1's huge sentinel parse as none).
fn control_group_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (root, own) = groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        match controllers {
            "" => Some(("/sys/fs/cgroup", path.to_string())),
            c if c.split(',').any(|c| c == "memory") => Some(("/sys/fs/cgroup/memory", path.to_string())),
            _ => None,
        }
    })?;
    let file = if root.ends_with("memory") { "memory.limit_in_bytes" } else { "memory.max" };
    Path::new(&own)
        .ancestors()
        .filter_map(|group| {
            let path = Path::new(root).join(group.strip_prefix("/").unwrap_or(group)).join(file);
            std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok()
        })
        .min()
}
