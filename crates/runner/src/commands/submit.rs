//! `radrun submit RECIPE --slurm`: the runs not done yet as a Slurm job array.

use crate::cli::SubmitArgs;
use crate::cluster::slurm::{self, Job, Resources, Submitted};
use crate::error::RadrunError;
use crate::store::{RunDir, State, WriteError, write_atomic};

pub fn submit(args: &SubmitArgs) -> Result<(), RadrunError> {
    let recipe_path = args.plan.recipe.clone().unwrap_or_default();
    if !args.slurm {
        return Err(super::usage_error(
            &recipe_path,
            "say where to submit: `radrun submit RECIPE --slurm` (Slurm is the cluster engine radrun knows)".into(),
        ));
    }
    let plan = super::load_plan(&args.plan)?;
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let runs_root = absolute(&args.runs);
    let folder = runs_root.join(&plan.recipe_name);
    let indices: Vec<usize> = plan
        .runs
        .iter()
        .enumerate()
        .filter(|(_, run)| RunDir::new(folder.join(&run.id)).status().is_none_or(|s| s.state != State::Done))
        .map(|(i, _)| i)
        .collect();
    if indices.is_empty() {
        eprintln!("every run of {} is done in {}: nothing to submit", plan.recipe_path.display(), folder.display());
        return Ok(());
    }
    let radrun = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|source| RadrunError::Process { what: "find radrun's own path".into(), source })?;
    let recipe = absolute(&plan.recipe_path);
    let slurm_folder = folder.join("slurm");
    let resources = Resources {
        partition: args.partition.clone(),
        gpus_per_run: args.gpus_per_run,
        cpus_per_run: args.cpus_per_run,
        mem: args.mem.clone(),
        time: args.time.clone(),
        max_parallel: args.max_parallel,
        account: args.account.clone(),
    };
    let job = Job {
        recipe_name: &plan.recipe_name,
        radrun: &radrun,
        recipe: &recipe,
        runs_root: &runs_root,
        set: &args.plan.set,
        indices: &indices,
        resources: &resources,
        extra: &plan.slurm.sbatch,
        log_folder: &slurm_folder,
    };
    let text = slurm::script(&job);
    if args.dry_run {
        print!("{text}");
        eprintln!("(dry run: {} run(s) would be submitted; nothing written or submitted)", indices.len());
        return Ok(());
    }
    let script = slurm_folder.join("submit.sbatch");
    write_atomic(&script, text.as_bytes())?;
    let job_id = slurm::sbatch(&script).map_err(RadrunError::Slurm)?;
    let array = slurm::array_spec(&indices, args.max_parallel);
    slurm::record_job(
        &folder,
        Submitted {
            job_id: job_id.clone(),
            submitted: jiff::Timestamp::now().to_string(),
            array: array.clone(),
            script: script.clone(),
        },
    )
    .map_err(|e: WriteError| RadrunError::from(e))?;
    eprintln!(
        "submitted Slurm job {job_id}: {} run(s) as array {array} ({})\nfollow it with: radrun status {} --runs {}",
        indices.len(),
        script.display(),
        plan.recipe_path.display(),
        runs_root.display()
    );
    println!("{job_id}");
    Ok(())
}
