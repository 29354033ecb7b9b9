fn main() -> std::process::ExitCode {
    kstone_cli::main_with(std::env::args_os())
}
