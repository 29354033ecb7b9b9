//! `kstone backup …`: one file per subcommand.

pub mod create;
pub mod export;
pub mod info;
pub mod init;
pub mod keygen;
pub mod list;
pub mod prune;
pub mod rekey;
pub mod status;
pub mod verify;

use clap::Subcommand;
use kstone_backup::manifest::rfc3339;
use kstone_backup::BackupManifest;
use serde_json::json;

use crate::exit::Exit;
use crate::CliResult;

/// The `backup` subcommands.
#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    Init(init::InitArgs),
    Rekey(rekey::RekeyArgs),
    Keygen(keygen::KeygenArgs),
    Create(create::CreateArgs),
    List(list::ListArgs),
    Info(info::InfoArgs),
    Verify(verify::VerifyArgs),
    Status(status::StatusArgs),
    Prune(prune::PruneArgs),
    Export(export::ExportArgs),
}

/// Run a `backup` subcommand.
pub fn run(cmd: &BackupCmd) -> CliResult<Exit> {
    match cmd {
        BackupCmd::Init(a) => init::run(a),
        BackupCmd::Rekey(a) => rekey::run(a),
        BackupCmd::Keygen(a) => keygen::run(a),
        BackupCmd::Create(a) => create::run(a),
        BackupCmd::List(a) => list::run(a),
        BackupCmd::Info(a) => info::run(a),
        BackupCmd::Verify(a) => verify::run(a),
        BackupCmd::Status(a) => status::run(a),
        BackupCmd::Prune(a) => prune::run(a),
        BackupCmd::Export(a) => export::run(a),
    }
}

/// A backup's manifest in brief (`list --json`, `info`, `create --json`).
fn summary(m: &BackupManifest) -> serde_json::Value {
    json!({
        "id": m.id, "type": m.kind, "parent": m.parent, "base_full": m.base_full,
        "db_id": m.db_id, "history": m.history, "snapshot_lsn": m.snapshot_lsn,
        "snapshot_time": rfc3339(m.snapshot_commit_us), "completed": rfc3339(m.completed_at_us),
        "duration_secs": (m.completed_at_us.saturating_sub(m.started_at_us)) as f64 / 1e6,
        "items": m.item_count, "files": m.files.len(),
        "bytes_stored": m.bytes_stored, "bytes_total": m.bytes_total,
        "format": m.format_version, "resumed_bytes": m.resumed_bytes,
    })
}
