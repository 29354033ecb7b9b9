//! `kstone demo`: the product in one minute — a realistic database, a full
//! and an incremental backup, continuous WAL archiving, an accident, and a
//! point-in-time restore to the moment before it, verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstone_backup::manifest::rfc3339;
use kstone_backup::wal_archive::BackgroundArchiver;
use kstone_backup::{BackupOptions, BackupType, DatabaseBackupExt, Target};
use kstone_core::{
    export_line, item_from_plain_json, Database, Durability, Options, Query, WriteOp,
};
use sha2::{Digest, Sha256};

use crate::exit::Exit;
use crate::{CliError, CliResult};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const CITIES: &[&str] = &[
    "Lisbon", "Oslo", "Osaka", "Lima", "Accra", "Perth", "Quebec", "Pune",
];
const PRODUCTS: &[&str] = &[
    "kettle", "lamp", "desk", "chair", "mug", "rug", "shelf", "clock",
];

/// The i-th order of the sample shop: (customer partition, sort key, item JSON).
fn order(i: u64, version: u64) -> (String, String, String) {
    let customer = i / 20;
    let r = mix(i ^ (version << 40));
    let lines: Vec<String> = (0..1 + r % 3)
        .map(|l| {
            let p = PRODUCTS[((r >> (8 * l)) % PRODUCTS.len() as u64) as usize];
            format!(
                r#"{{"sku":"{p}-{}","qty":{},"price":{}.{:02}}}"#,
                (r >> 16) % 90 + 10,
                1 + (r >> 4) % 4,
                5 + (r >> 20) % 200,
                (r >> 28) % 100
            )
        })
        .collect();
    let status =
        ["placed", "paid", "shipped", "delivered"][(version as usize + (r % 2) as usize).min(3)];
    let json = format!(
        r#"{{"status":"{status}","lines":[{}],"ship_to":{{"city":"{}","zip":"{:05}"}},"gift":{},"version":{version}}}"#,
        lines.join(","),
        CITIES[(customer % CITIES.len() as u64) as usize],
        customer % 100_000,
        r.is_multiple_of(7)
    );
    (
        format!("customer#{customer:06}"),
        format!("order#2026-{:02}-{:02}#{i:08}", 1 + i % 12, 1 + i % 28),
        json,
    )
}

fn digest(db: &Database) -> CliResult<(String, u64)> {
    let mut h = Sha256::new();
    let schema = *db.key_schema();
    let n = db.for_each_item(|k, item| {
        h.update(export_line(&schema, k, item).as_bytes());
        h.update(b"\n");
        Ok::<(), CliError>(())
    })?;
    Ok((kstone_core::fsio::hex(&h.finalize()), n))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

pub fn run(dir: Option<PathBuf>, items: u64) -> CliResult<Exit> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("kstone-demo"));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(CliError::failure(format!(
            "{} already exists; remove it or pass --dir to choose another place",
            dir.display()
        )));
    }
    if items < 100 {
        return Err(CliError::failure("--items must be at least 100"));
    }
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("shop.keystone");
    let repo_path = dir.join("backups");
    let restored = dir.join("restored.keystone");
    let repo_loc = repo_path.to_string_lossy().into_owned();
    let say = |s: &str| eprintln!("› {s}");

    say(&format!(
        "creating {} with {items} orders across {} customers",
        db_path.display(),
        items / 20
    ));
    let opts = Options {
        durability: Durability::Buffered,
        ..Options::default()
    };
    let db = Arc::new(Database::create_with_keys(
        &db_path,
        opts,
        kstone_core::KeySchema::typed(
            Some(kstone_core::KeyType::S),
            kstone_core::SortKeyRule::Required(kstone_core::KeyType::S),
        ),
    )?);
    let t = Instant::now();
    for chunk in (0..items).collect::<Vec<_>>().chunks(1000) {
        let ops = chunk
            .iter()
            .map(|&i| {
                let (pk, sk, json) = order(i, 0);
                Ok(WriteOp::Put {
                    pk: pk.into_bytes(),
                    sk: Some(sk.into_bytes()),
                    item: item_from_plain_json(&json)?,
                })
            })
            .collect::<kstone_core::Result<Vec<_>>>()?;
        db.write_batch(&ops)?;
    }
    db.sync()?;
    db.flush()?;
    let load_secs = t.elapsed().as_secs_f64();

    say(&format!(
        "starting continuous WAL archiving into {}",
        repo_path.display()
    ));
    // The demo makes its own local, unencrypted repository: no identity or
    // S3 setting applies to it.
    let (repo, _) =
        crate::access::open_or_init(&repo_loc, db.path(), &kstone_backup::OpenOptions::default())?;
    let archiver =
        BackgroundArchiver::start(Arc::clone(&db), &repo_loc, Duration::from_millis(500))?;

    say("full backup");
    let t = Instant::now();
    let full = db.backup(
        &repo,
        &BackupOptions {
            kind: Some(BackupType::Full),
            parallelism: 4,
            ..Default::default()
        },
    )?;
    let full_secs = t.elapsed().as_secs_f64();

    let changed = items / 50;
    say(&format!(
        "customers keep ordering: {changed} orders change status"
    ));
    for i in 0..changed {
        let (pk, sk, json) = order(i * 50 % items, 1);
        db.put(
            pk.as_bytes(),
            Some(sk.as_bytes()),
            &item_from_plain_json(&json)?,
        )?;
    }
    db.sync()?;
    say("incremental backup");
    let t = Instant::now();
    let inc = db.backup(
        &repo,
        &BackupOptions {
            kind: Some(BackupType::Incremental),
            parallelism: 4,
            ..Default::default()
        },
    )?;
    let inc_secs = t.elapsed().as_secs_f64();

    for i in 0..changed / 2 {
        let (pk, sk, json) = order((i * 50 + 7) % items, 2);
        db.put(
            pk.as_bytes(),
            Some(sk.as_bytes()),
            &item_from_plain_json(&json)?,
        )?;
    }
    db.sync()?;
    let (good_digest, good_items) = digest(&db)?;
    let (point_lsn, point_ts) = db.create_restore_point("before-accident")?;
    // A little time passes before the accident.
    std::thread::sleep(Duration::from_millis(300));

    let victim = "customer#000001";
    say(&format!(
        "ACCIDENT: a bad script deletes every item of {victim}"
    ));
    let page = db.query(&Query::new(victim.as_bytes()))?;
    let deleted = page.items.len();
    let ops: Vec<WriteOp> = page
        .items
        .iter()
        .map(|(k, _)| WriteOp::Delete {
            pk: k.pk.clone(),
            sk: k.sk.clone(),
        })
        .collect();
    db.write_batch(&ops)?;
    db.sync()?;
    let (_, after_items) = digest(&db)?;
    // Stop archiving (a last round ships the accident too) and close.
    drop(archiver);
    let db = Arc::try_unwrap(db).map_err(|_| CliError::failure("demo: database still shared"))?;
    db.close()?;

    let target = point_ts;
    say(&format!(
        "point-in-time restore to {} (just before the accident) into {}",
        rfc3339(target),
        restored.display()
    ));
    let t = Instant::now();
    let rep = repo.restore_to(&Target::Time(target), &restored, None)?;
    let restore_secs = t.elapsed().as_secs_f64();
    let r = Database::open(&restored, Options::default())?;
    let (restored_digest, restored_items) = digest(&r)?;
    let back = r.query(&Query::new(victim.as_bytes()))?.items.len();
    r.close()?;
    let same = restored_digest == good_digest;

    let db_bytes = kstone_core::fsio::tree_bytes(&db_path);
    println!();
    println!("KeystoneDB demo — {}", dir.display());
    println!(
        "  database        {} items, {} on disk (loaded in {load_secs:.1} s)",
        good_items,
        mib(db_bytes)
    );
    println!(
        "  full backup     stored {} of {} in {full_secs:.2} s",
        mib(full.bytes_stored),
        mib(full.bytes_total)
    );
    println!(
        "  incremental     stored {} after {changed} changes ({:.1}% of the full) in {inc_secs:.2} s",
        mib(inc.bytes_stored),
        inc.bytes_stored as f64 * 100.0 / full.bytes_stored.max(1) as f64
    );
    println!(
        "  accident        deleted {deleted} items of {victim}; the database now has {after_items}"
    );
    println!(
        "  recovered       to LSN {} at {} (restore point \"before-accident\" is LSN {point_lsn}); base {} + {} replayed writes, in {restore_secs:.2} s",
        rep.reached_lsn,
        rfc3339(rep.reached_ts),
        rep.base_backup,
        rep.replayed
    );
    println!(
        "  verified        {} items, {victim} has {back} items again; contents {} the database before the accident",
        restored_items,
        if same { "are identical to" } else { "DIFFER FROM" }
    );
    println!();
    println!("Do it yourself (kstone is target/release/kstone; `cargo install --path crates/kstone-cli` puts it on your PATH):");
    let d = dir.display();
    println!("  kstone stats {d}/shop.keystone");
    println!("  kstone query {d}/shop.keystone {victim}                 # gone");
    println!("  kstone query {d}/restored.keystone {victim}             # back");
    println!("  kstone backup list --repo {d}/backups");
    println!("  kstone backup status --repo {d}/backups");
    println!("  kstone backup verify --repo {d}/backups --all --deep");
    println!("  kstone backup create {d}/shop.keystone --repo {d}/backups --type incremental");
    println!("  kstone wal-archive {d}/shop.keystone --repo {d}/backups --once");
    println!(
        "  kstone restore --repo {d}/backups --target {d}/again.keystone --to-name before-accident"
    );
    println!(
        "  kstone restore --repo {d}/backups --target {d}/again2.keystone --to-time @{}.{:06}",
        target / 1_000_000,
        target % 1_000_000
    );
    println!();
    println!("Everything is left in {d} for you to explore.");
    if !same {
        return Err(CliError::failure(
            "the restored database does not match the data before the accident",
        ));
    }
    Ok(Exit::Success)
}
