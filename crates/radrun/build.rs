//! radrun's build script: libtorch's rpath and link flags for `radrun-torch`, the tests
//! and the benchmarks (see `../libtorch_link.rs`), not for `radrun`, whose light
//! commands start without loading libtorch (see ARCHITECTURE.md).

#[path = "../libtorch_link.rs"]
mod libtorch_link;

fn main() {
    libtorch_link::link(&["rustc-link-arg-bin=radrun-torch", "rustc-link-arg-tests", "rustc-link-arg-benches"]);
}
