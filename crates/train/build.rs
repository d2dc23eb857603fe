//! The train crate's build script: libtorch's rpath and link flags (see
//! `../libtorch_link.rs`), and `csrc/autocast.cpp`, compiled against the headers of the
//! libtorch torch-sys found (they sit beside its `lib` folder: `../include`).

use std::path::Path;

#[path = "../libtorch_link.rs"]
mod libtorch_link;

fn main() {
    libtorch_link::main();
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch folder");
    let include = Path::new(&lib).join("../include");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/autocast.cpp")
        .compile("radrun_autocast");
}
