//! `radrun RECIPE --jobs N`: a sweep's runs trained at once by worker
//! processes, each with its share of the CPU cores, giving the results one process
//! gives training them in turn with as many threads; the images decoded once into the
//! image cache that every worker reads.

use crate::common::{Project, TINY, assert_close, radrun, radrun_env, stderr, tiny_probability_tolerance};
use crate::predict::rows;
use crate::resume::results;

fn three_runs() -> String {
    TINY.replace("image_size = [32, 32]", "image_size = [16, 16]").replace("epochs = 2", "epochs = 1")
        + "\n[sweep]\n\"train.learning_rate\" = [0.001, 0.002, 0.003]\n"
}

#[test]
fn workers_train_runs_at_once_with_their_share_of_the_cores_and_the_same_results() {
    let p = Project::new(2);
    let name = p.recipe("jobs.toml", &three_runs());
    // the share of the cores is what a recipe's `train.threads` of 0 (all cores) gets; a
    // `RADRUN_TRAIN__THREADS` of the environment (CI runs the suite with 1 and with 2)
    // would win over it, and change the run ids (train.threads is a setting)
    let all_cores = ("RADRUN_TRAIN__THREADS", "0");
    let out = radrun_env(p.path(), &[&name, "--jobs", "2", "--set", "data.cache=disk"], &[all_cores]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = (cores / 2).max(1);
    assert!(
        err.contains(&format!("3 run(s) of {name} to train, up to 2 at a time, {threads} CPU thread(s) each")),
        "{err}"
    );
    // two workers started before any run finished: they trained at once
    let second_start = err.match_indices(": started (worker").nth(1).map(|(i, _)| i).expect("three starts");
    let first_result = err.find(": done, test").expect("a result line");
    assert!(second_start < first_result, "{err}");
    assert_eq!(err.matches(": done, test").count(), 3, "{err}");
    assert!(err.contains(" epoch   1/1 [train] loss "), "the workers' epochs are shown:\n{err}");

    let folder = p.path().join("runs/jobs");
    let summary = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    assert_eq!(summary.matches(",done,").count(), 3, "{summary}");
    assert!(folder.join("report.html").exists());
    let mut runs: Vec<_> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    runs.sort();
    let mut pids = Vec::new();
    for run in &runs {
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["device"], format!("cpu ({threads} threads)"), "{}", run.display());
        let log = std::fs::read_to_string(run.join("train.log")).unwrap();
        let pid = log.split("started by process ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap();
        pids.push(pid.to_string());
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "each run in its own worker: {pids:?}");

    let cached: Vec<_> = std::fs::read_dir(p.path().join("runs/.image-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "images"))
        .collect();
    assert_eq!(cached.len(), 1, "the workers share one image cache file: {cached:?}");
    // one worker decoded while the other waited, then it and the third read its file
    let logs: Vec<String> = runs.iter().map(|r| std::fs::read_to_string(r.join("train.log")).unwrap()).collect();
    let count = |what: &str| logs.iter().filter(|log| log.contains(what)).count();
    assert_eq!((count("images decoded into image cache"), count("images read from image cache")), (1, 2), "{logs:?}");

    // one process, the runs in turn, with the workers' threads, images decoded into
    // memory: the same results, byte for byte (one binary, one machine, the same thread
    // count, and CPU kernels that are deterministic for a thread count: see
    // resume::assert_same_results)
    let worker_threads = threads.to_string();
    let alone = radrun_env(
        p.path(),
        &[&name, "--runs", "alone", "--set", "data.cache=memory"],
        &[(radrun_runner::run::THREADS_VARIABLE, worker_threads.as_str()), all_cores],
    );
    assert!(alone.status.success() && stderr(&alone).contains("(decoded into memory in "), "{}", stderr(&alone));
    for run in &runs {
        let twin = p.path().join("alone/jobs").join(run.file_name().unwrap());
        let (mine, theirs) = (results(run), results(&twin));
        assert_eq!(mine.len(), theirs.len(), "{}: the same result files", run.display());
        for ((what, a), (_, b)) in mine.into_iter().zip(theirs) {
            assert!(a == b, "{what} of {} differs between a worker and one process", run.display());
        }
    }

    let one =
        radrun_env(p.path(), &["run", &name, "--index", "0", "--force", "--set", "data.cache=disk"], &[all_cores]);
    let read = format!(
        "(read from image cache {} in ",
        std::path::Path::new("runs").join(cached[0].strip_prefix(p.path().join("runs")).unwrap()).display()
    );
    assert!(one.status.success() && stderr(&one).contains(&read), "{read}\n{}", stderr(&one));

    // done runs are not trained again; bad counts are refused
    let again = radrun_env(p.path(), &[&name, "--jobs", "2"], &[all_cores]);
    assert!(again.status.success() && stderr(&again).contains("0 run(s) of"), "{}", stderr(&again));
    let zero = radrun(p.path(), &[&name, "--set", "run.jobs=0"]);
    assert!(!zero.status.success() && stderr(&zero).contains("`run.jobs` is 0"), "{}", stderr(&zero));
    let gpus = radrun(p.path(), &[&name, "--jobs", "2", "--gpus", "7"]);
    assert!(!gpus.status.success() && stderr(&gpus).contains("--gpus names GPU 7"), "{}", stderr(&gpus));
}

#[test]
fn precision_and_channels_last_are_recipe_settings_that_run_on_the_cpu() {
    let p = Project::new(2);
    let name = p.recipe("amp.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let out = radrun(p.path(), &[&name, "--set", "train.precision=bf16", "--set", "train.channels_last=on"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = std::fs::read_dir(p.path().join("runs/amp")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir());
    let run = run.expect("a run folder");
    let recipe: toml::Table = std::fs::read_to_string(run.join("recipe.toml")).unwrap().parse().unwrap();
    assert_eq!(recipe["train"]["precision"].as_str(), Some("bf16"));
    assert_eq!(recipe["train"]["channels_last"].as_str(), Some("on"));
    // the kernels were NHWC in memory: the weights file holds them as every file does, so
    // predicting from it gives the probabilities the run's own evaluation gave, up to the
    // rounding of other kernels (NCHW, other batches: see tiny_probability_tolerance)
    let predicted = radrun(p.path(), &["predict", run.to_str().unwrap(), "data/Test", "--out", "p.csv"]);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let (got, own) = (rows(&p.path().join("p.csv")), rows(&run.join("predictions.csv")));
    assert_eq!(got.len(), own.len());
    for (file, (want, _)) in &own {
        let have = &got[file].0;
        assert_close(have, want, tiny_probability_tolerance(), file);
    }
    let bad = radrun(p.path(), &[&name, "--set", "train.precision=fp64"]);
    let err = stderr(&bad);
    assert!(!bad.status.success() && err.contains("train.precision") && err.contains("bf16"), "{err}");
}
