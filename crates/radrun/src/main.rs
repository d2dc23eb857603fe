// Images are large allocations: mimalloc keeps them instead of returning them to the
// kernel and faulting them in again for every decoded file.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    radrun_runner::main()
}
