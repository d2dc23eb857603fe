//! Shared build script of every crate whose binaries or tests link libtorch.
//!
//! tch's own build script (torch-sys) finds libtorch and adds it to the link, but two
//! things do not reach downstream binaries: an rpath (so `radrun` and the test binaries run
//! without LD_LIBRARY_PATH), and `--no-as-needed` around `-ltorch` (without it the linker
//! drops `libtorch.so`, and with it `libtorch_cuda.so`, because no symbol is referenced
//! directly, and CUDA is then silently unavailable; tch-rs issues #907 and #980).
//! torch-sys publishes its library folder as `DEP_TCH_LIBTORCH_LIB` to crates that depend
//! on it directly, so each such crate lists `torch-sys` and points `build` here.

#[allow(dead_code)] // the runner's build script calls `link` for some of its targets
pub fn main() {
    link(&["rustc-link-arg"]);
}

/// The rpath for every target of the crate, and `--no-as-needed` around libtorch for the
/// targets the `directives` name (`rustc-link-arg` for all of them,
/// `rustc-link-arg-bin=NAME`, `rustc-link-arg-tests`...). The runner keeps libtorch out of
/// `radrun` so: its light commands must start without loading it.
pub fn link(directives: &[&str]) {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report its libtorch folder (DEP_TCH_LIBTORCH_LIB)");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let mut flags = vec!["-Wl,--no-as-needed".to_string(), format!("-L{lib}"), "-ltorch".into()];
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        flags.push("-ltorch_cuda".into());
    }
    flags.push("-Wl,--as-needed".into());
    for directive in directives {
        for flag in &flags {
            println!("cargo:{directive}={flag}");
        }
    }
}
