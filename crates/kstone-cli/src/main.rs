fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when a reader goes away
    // (`kstone backup status | head -3`) instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of a signal before any
    // thread starts has no memory-safety effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    kstone_cli::main_with(std::env::args_os())
}
