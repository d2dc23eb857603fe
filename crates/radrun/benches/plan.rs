//! How long planning a large sweep takes (10,000 runs expand, resolve and
//! validate in under a second). Not a test; see bench/plan.sh.
//!
//!     cargo bench -p radrun --bench plan -- [VALUES_PER_KEY]     default 100 (100 x 100 runs)

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let per_key: usize = args.get(1).map_or(100, |v| v.parse().expect("a number of values"));
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/chest6");
    let values: Vec<String> = (1..=per_key).map(|v| v.to_string()).collect();
    let recipe = dir.path().join("big.toml");
    std::fs::write(
        &recipe,
        format!(
            "[data]\nroot = {:?}\n[model]\nkind = \"cnn\"\n[sweep]\n\"train.epochs\" = [{list}]\n\"model.dense_units\" = [{list}]\n",
            data.canonicalize().expect("the example data").display().to_string(),
            list = values.join(", ")
        ),
    )
    .expect("the recipe is written");
    let started = Instant::now();
    let plan = radrun_runner::recipe::plan::plan(&recipe, &Default::default()).expect("the recipe plans");
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"runs\": {}, \"seconds\": {seconds:.3}}}", plan.runs.len());
}
