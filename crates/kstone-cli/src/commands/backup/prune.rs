//! `kstone backup prune`: delete what no retention rule keeps.

use kstone_backup::Policy;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::time_args::parse_age;
use crate::CliResult;

/// Delete backups and archived WAL that no rule keeps. A backup that a kept
/// backup depends on is always kept, and so is the WAL kept backups need.
/// With no rule given, nothing is deleted. Try --dry-run first.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Keep the N newest backups (per database).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the last N weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep every backup younger than this (e.g. 7d, 36h).
    #[arg(long, value_parser = parse_age, value_name = "DURATION")]
    pub keep_within: Option<std::time::Duration>,
    /// Keep full backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_full_days: Option<u64>,
    /// Keep differential backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_differential_days: Option<u64>,
    /// Keep incremental backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_incremental_days: Option<u64>,
    /// Keep every point of this last period restorable (backup + archived WAL).
    #[arg(long, value_parser = parse_age, value_name = "DURATION")]
    pub pitr_window: Option<std::time::Duration>,
    /// Allow a policy that deletes every backup of a database (and the
    /// archived WAL that needed them), e.g. --keep-last 0; without it such a
    /// prune is refused and deletes nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup prune`.
pub fn run(a: &PruneArgs) -> CliResult<Exit> {
    let us = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
    let policy = Policy {
        keep_last: a.keep_last,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_within_us: us(a.keep_within),
        keep_full_days: a.keep_full_days,
        keep_differential_days: a.keep_differential_days,
        keep_incremental_days: a.keep_incremental_days,
        pitr_window_us: us(a.pitr_window),
        allow_empty: a.allow_empty,
    };
    let r = crate::access::open(&a.repo, &a.access.open_options())?;
    let plan = r.prune(&policy, a.dry_run, kstone_core::fsio::now_micros())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(Exit::Success);
    }
    if policy.is_empty() {
        eprintln!("no retention rule given: nothing is deleted (see kstone backup prune --help)");
    }
    for d in &plan.damaged {
        eprintln!("warning: damaged backup {d} (it and every older backup are kept)");
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for d in &plan.decisions {
        println!(
            "{:<7} {:<30} {:<12} {:>12}  {}",
            if d.keep {
                "keep"
            } else if a.dry_run {
                "DELETE?"
            } else {
                "DELETED"
            },
            d.id,
            d.kind.to_string(),
            d.bytes,
            d.reasons.join(", ")
        );
    }
    let gone = plan.decisions.iter().filter(|d| !d.keep).count();
    println!(
        "{verb} {gone} of {} backups ({} bytes) and {} of {} archived WAL objects",
        plan.decisions.len(),
        plan.bytes_freed,
        plan.wal_delete.len(),
        plan.wal_delete.len() + plan.wal_keep
    );
    if let Some(gc) = &plan.chunks {
        for d in &gc.damaged {
            eprintln!(
                "warning: {d} does not match its checksum: kept as it is, not repacked (`kstone backup verify --all` names what it holds)"
            );
        }
        match &gc.skipped {
            Some(why) => eprintln!("warning: no pack deleted: {why} (every pack is kept until it is repaired or pruned)"),
            None => println!(
                "packs: {verb} {}, repacked {} into {}",
                gc.packs_deleted, gc.packs_repacked, gc.packs_written
            ),
        }
    }
    Ok(Exit::Success)
}
