fn main() -> std::process::ExitCode {
    // When a reader goes away (`kstone backup status | head -3`), end
    // quietly as other Unix tools do instead of printing a panic. (Not by
    // restoring SIGPIPE's default: that would also kill the process on a
    // connection an S3 server cuts, which must be an error, not a death.)
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    kstone_cli::main_with(std::env::args_os())
}
