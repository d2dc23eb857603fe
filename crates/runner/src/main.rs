fn main() -> std::process::ExitCode {
    radrun::main()
}
