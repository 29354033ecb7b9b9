//! `kstone-cli`: the name the operations chapter's scripts use. Accepts
//! `kstone-cli --db-path DB --command stats` and otherwise behaves as `kstone`.

use std::ffi::OsString;

fn main() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    kstone_cli::main_with(translate(args))
}

/// Rewrite `--db-path DB --command CMD [ARGS…]` (either order, `=` forms too)
/// into `kstone CMD DB [ARGS…]`.
fn translate(args: Vec<OsString>) -> Vec<OsString> {
    let mut db = None;
    let mut cmd = None;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    let prog = it.next().unwrap_or_else(|| "kstone-cli".into());
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        if s == "--db-path" {
            db = it.next();
        } else if let Some(v) = s.strip_prefix("--db-path=") {
            db = Some(v.into());
        } else if s == "--command" {
            cmd = it.next();
        } else if let Some(v) = s.strip_prefix("--command=") {
            cmd = Some(v.into());
        } else {
            rest.push(a);
        }
    }
    match (db, cmd) {
        (Some(db), Some(cmd)) => {
            let mut out = vec![prog, cmd, db];
            out.extend(rest);
            out
        }
        (None, None) => std::iter::once(prog).chain(rest).collect(),
        _ => vec![
            prog,
            "--db-path and --command must be given together".into(),
        ],
    }
}
