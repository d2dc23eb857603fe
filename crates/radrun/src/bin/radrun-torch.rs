// `radrun-torch`: radrun with libtorch loaded, to which `radrun` hands the commands that
// need it (see `radrun_runner::main`); everything else of radrun runs without it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    radrun::main_torch()
}
