//! One function per command; each returns the process exit code.

mod admin;
mod backup;
mod data;

pub use data::for_each_item;
mod item;

use std::process::ExitCode;

use crate::args::Command;
use crate::CliResult;

pub fn run(cmd: Command) -> CliResult<ExitCode> {
    match cmd {
        Command::Demo { dir, items } => crate::demo::run(dir, items),
        Command::Create { db } => admin::create(&db),
        Command::Stats { db, json } => admin::stats(&db, json),
        Command::Flush { db } => admin::flush(&db),
        Command::Check { db, json } => admin::check(&db, json),
        Command::Compact { db } => admin::compact(&db),
        Command::Query(a) => data::query(&a),
        Command::Scan(a) => data::scan(&a),
        Command::Export { db, output } => data::export(&db, output.as_deref()),
        Command::Import { db, input } => data::import(&db, &input),
        Command::Put {
            db,
            pk,
            sk,
            json,
            typed,
        } => item::put(&db, &pk, sk.as_deref(), &json, typed),
        Command::Get { db, pk, sk, typed } => item::get(&db, &pk, sk.as_deref(), typed),
        Command::Delete { db, pk, sk } => item::delete(&db, &pk, sk.as_deref()),
        Command::Bench(args) => crate::bench::run(&args),
        Command::Backup(cmd) => backup::run(cmd),
        Command::Restore(args) => backup::restore(&args),
        Command::WalArchive {
            db,
            repo,
            interval,
            once,
            unregister,
        } => {
            if unregister {
                backup::wal_unregister(&db, &repo)
            } else {
                backup::wal_archive(&db, &repo, interval, once)
            }
        }
        Command::RestorePoint { db, name } => backup::restore_point(&db, &name),
        Command::Agent { config } => crate::agent::run(&config),
    }
}
