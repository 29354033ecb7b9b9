//! The top-level command line: `kstone COMMAND …`. Each command's options
//! live with its code in `commands/<command>.rs`.

use clap::{Parser, Subcommand};

use crate::commands::{
    agent, backup, bench, check, compact, create, delete, demo, export, flush, get, import, put,
    query, restore, restore_copies, restore_point, scan, stats, wal_archive,
};

#[derive(Parser, Debug)]
#[command(
    name = "kstone",
    version,
    about = "KeystoneDB: an embedded DynamoDB-style database with backup and recovery built in",
    long_about = "KeystoneDB: an embedded DynamoDB-style database with backup and recovery built in.",
    after_help = "Also installed as `kstone-cli`, which accepts the operations chapter's form\n  \
kstone-cli --db-path DB --command COMMAND [ARGS…]   (= kstone COMMAND DB [ARGS…])\n\n\
Exit codes (docs/operations.md, \"Exit codes\"):\n  \
0 success\n  \
1 failure; also problems found by check, backup verify and backup status, an item\n    \
get does not find, and a restore that cannot reach exactly the point asked for\n  \
2 usage error\n  \
3 not found: no database at the path, no repository at the location, no such backup,\n    \
restore point name or --archive file\n  \
4 lock held: another process has the database (LOCK) or the repository locked,\n    \
or archives the database already\n  \
5 cannot decrypt: no --identity, or none given is a recipient\n  \
6 corruption: stored data is damaged"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every command; `commands::run` runs one.
#[derive(Subcommand, Debug)]
pub enum Command {
    Demo(demo::DemoArgs),
    Create(create::CreateArgs),
    Put(put::PutArgs),
    Get(get::GetArgs),
    Delete(delete::DeleteArgs),
    Stats(stats::StatsArgs),
    Check(check::CheckArgs),
    Flush(flush::FlushArgs),
    Compact(compact::CompactArgs),
    Query(query::QueryArgs),
    Scan(scan::ScanArgs),
    Export(export::ExportArgs),
    Import(import::ImportArgs),
    /// Backups: create, list, inspect, verify and export them.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    Restore(restore::RestoreArgs),
    WalArchive(wal_archive::WalArchiveArgs),
    Agent(agent::AgentArgs),
    RestorePoint(restore_point::RestorePointArgs),
    RestoreCopies(restore_copies::RestoreCopiesArgs),
    Bench(bench::BenchArgs),
}
