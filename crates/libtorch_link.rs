//! Shared build script of every crate whose binaries or tests link libtorch.
//!
//! tch's own build script (torch-sys) finds libtorch and adds it to the link, but two
//! things do not reach downstream binaries: an rpath (so `radrun` and the test binaries run
//! without LD_LIBRARY_PATH), and `--no-as-needed` around `-ltorch` (without it the linker
//! drops `libtorch.so`, and with it `libtorch_cuda.so`, because no symbol is referenced
//! directly, and CUDA is then silently unavailable; tch-rs issues #907 and #980).
//! torch-sys publishes its library folder as `DEP_TCH_LIBTORCH_LIB` to crates that depend
//! on it directly, so each such crate lists `torch-sys` and points `build` here.

pub fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report its libtorch folder (DEP_TCH_LIBTORCH_LIB)");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch");
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
