//! Recipe files as `radrun plan` reads them: TOML, keys, values, sweeps and every check
//! that runs before any data is loaded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("radrun-fuzz-recipe-{}.toml", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = radrun_runner::recipe::plan::plan(&path, &Default::default());
});
