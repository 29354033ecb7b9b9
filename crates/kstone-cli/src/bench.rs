//! `kstone bench`: db_bench-style throughput of writes and reads, with fixed
//! seeds, 16-byte keys and incompressible values.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kstone_core::{
    Database, Durability, Item, KeyAttr, KeySchema, KeyType, Number, Options, Query,
    SortKeyCondition, SortKeyRule, TypedCondition, Value,
};
use serde_json::json;

use crate::commands::bench::{BenchArgs, BenchKeys, DurabilityArg, Workload};
use crate::exit::Exit;
use crate::CliResult;

/// splitmix64: a fixed, seedable sequence so every run writes the same keys.
/// (Ten lines; a `rand` dependency buys nothing here.)
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Items per partition: keys are 8-byte partition + 8-byte sort key (16 bytes),
/// so the same data serves point reads, queries and scans.
const PER_PARTITION: u64 = 100;

/// Partition count for `n` items.
fn partitions(n: u64) -> u64 {
    n.div_ceil(PER_PARTITION).max(1)
}

/// Key of the i-th item: partition `i % P`, random sort key, so writes land
/// in random order.
fn key(i: u64, n: u64) -> ([u8; 8], SortKey) {
    if SEQUENTIAL.load(std::sync::atomic::Ordering::Relaxed) {
        // fillseq: partitions and sort keys in ascending order.
        return (pk(i / PER_PARTITION), SortKey::of(i as u32, false));
    }
    (pk(i % partitions(n)), SortKey::of(mix(i) as u32, false))
}

/// Set for the `fillseq` workload (one process runs one workload).
static SEQUENTIAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set for `--keys typed`: sort keys are N (the number), not 8 hex bytes.
static TYPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A sort key's stored bytes, without an allocation in byte-key runs.
struct SortKey {
    b: [u8; 16],
    len: usize,
}

impl SortKey {
    /// `x` as 8 hex digits, or with `--keys typed` as the N key `x`
    /// (`x.5` for `half`, a key never written); `half` in byte runs puts
    /// `g`, not a hex digit, first.
    fn of(x: u32, half: bool) -> SortKey {
        let mut k = SortKey { b: [0; 16], len: 8 };
        if TYPED.load(std::sync::atomic::Ordering::Relaxed) {
            // What an application pays to build a typed key.
            let text = if half {
                format!("{x}.5")
            } else {
                x.to_string()
            };
            let stored = Number::parse(&text).map(KeyAttr::N).map(|a| a.to_stored());
            if let Ok(v) = stored {
                k.len = v.len().min(16);
                k.b[..k.len].copy_from_slice(&v[..k.len]);
            }
        } else {
            k.b[..8].copy_from_slice(&hex8(u64::from(x)));
            if half {
                k.b[0] = b'g';
            }
        }
        k
    }

    fn as_slice(&self) -> &[u8] {
        &self.b[..self.len]
    }
}

fn pk(p: u64) -> [u8; 8] {
    if SEQUENTIAL.load(std::sync::atomic::Ordering::Relaxed) {
        return hex8(p);
    }
    hex8(mix(p ^ 0xabcd_ef01) ^ p)
}

fn hex8(x: u64) -> [u8; 8] {
    let mut k = [0u8; 8];
    k.copy_from_slice(format!("{:08x}", x as u32).as_bytes());
    k
}

fn value(i: u64, size: usize) -> Item {
    let mut v = Vec::with_capacity(size + 8);
    let mut x = i ^ 0x5eed;
    while v.len() < size {
        x = mix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    let mut item = Item::new();
    item.insert("v".into(), Value::B(v));
    item
}

struct Run {
    mode: &'static str,
    writes: u64,
    /// Bytes the database wrote during the write phase (WAL, flush, compaction).
    written: kstone_core::stats::Written,
    write_secs: f64,
    reads: u64,
    read_secs: f64,
    queries: u64,
    query_items: u64,
    query_secs: f64,
    scanned: u64,
    scan_secs: f64,
    open_secs: f64,
    disk_bytes: u64,
    missing: u64,
    missing_secs: f64,
    /// (writes replayed, restore seconds, sorted lag samples in seconds)
    replay: Option<(u64, f64, Vec<f64>)>,
}

fn run_one(dir: &Path, mode: DurabilityArg, n: u64, args: &BenchArgs) -> CliResult<Run> {
    let opts = Options {
        durability: match mode {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Buffered => Durability::Buffered,
        },
        block_cache_bytes: args.block_cache_mb << 20,
        ..Options::default()
    };
    let schema = match args.keys {
        BenchKeys::Bytes => KeySchema::bytes(),
        BenchKeys::Typed => KeySchema::typed(Some(KeyType::S), SortKeyRule::Required(KeyType::N)),
    };
    TYPED.store(
        args.keys == BenchKeys::Typed,
        std::sync::atomic::Ordering::Relaxed,
    );
    let db = std::sync::Arc::new(Database::create_with_keys(dir, opts.clone(), schema)?);
    let archiving = match (&args.archive, mode) {
        (Some(repo), DurabilityArg::Buffered) => {
            let (r, _) = crate::access::open_or_init(repo, db.path(), &args.access.open_options())?;
            use kstone_backup::DatabaseBackupExt;
            db.backup(&r, &kstone_backup::BackupOptions::default())?;
            Some(kstone_backup::wal_archive::BackgroundArchiver::start(
                std::sync::Arc::clone(&db),
                repo,
                std::time::Duration::from_secs(1),
            )?)
        }
        _ => None,
    };
    let threads = args.threads.max(1) as u64;
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut lags: Vec<f64> = Vec::new();
    let t = Instant::now();
    std::thread::scope(|s| -> CliResult {
        let sampler = archiving.as_ref().map(|a| {
            let (db, done) = (&db, &done);
            // Everything committed before the fill is in the backup.
            let start_us = kstone_core::fsio::now_micros();
            s.spawn(move || {
                // Lag = newest commit − newest archived commit, every 100 ms
                // whatever the archiver is doing; before its first object,
                // counted from the start of the fill (not left out).
                let mut v = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    let last = db.stats().map(|s| s.last_commit_us).unwrap_or(0);
                    let archived = a.archived_ts().max(start_us);
                    v.push(last.saturating_sub(archived) as f64 / 1e6);
                }
                v
            })
        });
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let db = &db;
                s.spawn(move || -> kstone_core::Result<()> {
                    let mut i = th;
                    match args.workload {
                        Workload::Batch => {
                            // 1000 items per write batch: one WAL write per
                            // stripe and one fsync round per batch.
                            let mut batch = kstone_core::WriteBatch::with_capacity(1000);
                            while i < n {
                                let (p, s) = key(i, n);
                                batch.put(&p, Some(s.as_slice()), &value(i, args.value_size))?;
                                if batch.len() == 1000 {
                                    db.write(std::mem::take(&mut batch))?;
                                }
                                i += threads;
                            }
                            if !batch.is_empty() {
                                db.write(batch)?;
                            }
                        }
                        Workload::Fillrandom | Workload::Fillseq | Workload::Fillsync => {
                            while i < n {
                                let (p, s) = key(i, n);
                                db.put(&p, Some(s.as_slice()), &value(i, args.value_size))?;
                                i += threads;
                            }
                        }
                        Workload::Overwrite => {
                            for pass in 0..2u64 {
                                let mut i = th;
                                while i < n {
                                    let (p, s) = key(i, n);
                                    db.put(
                                        &p,
                                        Some(s.as_slice()),
                                        &value(i + pass * n, args.value_size),
                                    )?;
                                    i += threads;
                                }
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| crate::CliError::failure("writer thread panicked"))??;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = sampler {
            lags = h.join().unwrap_or_default();
        }
        Ok(())
    })?;
    db.sync()?;
    let write_secs = t.elapsed().as_secs_f64();
    let end = db.stats()?;
    let last_lsn = end.last_lsn;
    let written = end.written_since_open;
    drop(archiving);
    let db = std::sync::Arc::try_unwrap(db)
        .map_err(|_| crate::CliError::failure("bench: database still shared"))?;
    db.close()?;
    let replay = match (&args.archive, mode) {
        (Some(repo), DurabilityArg::Buffered) => {
            let r = crate::access::open(repo, &args.access.open_options())?;
            let target = dir.with_extension("pitr");
            let t = Instant::now();
            let rep = r.restore_to(&kstone_backup::Target::Lsn(last_lsn), &target, None)?;
            let secs = t.elapsed().as_secs_f64();
            let _ = std::fs::remove_dir_all(&target);
            lags.sort_by(f64::total_cmp);
            Some((rep.replayed, secs, lags))
        }
        _ => None,
    };

    let t = Instant::now();
    let db = Database::open(dir, opts)?;
    let open_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut x = 42u64;
    for _ in 0..n {
        x = mix(x);
        let i = x % n;
        let (p, s) = key(i, n);
        if db.get(&p, Some(s.as_slice()))?.is_none() {
            return Err(crate::CliError::failure(format!(
                "bench: item {i} missing after reopen"
            )));
        }
    }
    let read_secs = t.elapsed().as_secs_f64();

    // readmissing: keys of existing partitions that were never written.
    let t = Instant::now();
    let missing = n.max(10) / 10;
    for j in 0..missing {
        x = mix(x);
        let (p, _) = key(x % n, n);
        // A sort key no write used ('g…' or 'N.5').
        let s = SortKey::of(mix(j ^ 0xdead_beef) as u32, true);
        if db.get(&p, Some(s.as_slice()))?.is_some() {
            return Err(crate::CliError::failure("bench: a missing key was found"));
        }
    }
    let missing_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut queried = 0u64;
    let parts = partitions(n);
    // Every partition whole, through a sort-key condition (`≥` the lowest
    // key: a plain byte bound, or with typed keys a range within N).
    let lowest = if TYPED.load(std::sync::atomic::Ordering::Relaxed) {
        let zero = KeyAttr::N(Number::parse("0")?);
        db.key_schema().condition(&TypedCondition::Ge(zero))?
    } else {
        SortKeyCondition::Ge(b"0".to_vec())
    };
    for p in 0..parts {
        let mut q = Query::new(&pk(p));
        q.condition = Some(lowest.clone());
        queried += db.query(&q)?.items.len() as u64;
    }
    let query_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let scanned = db.for_each_item(|_, _| Ok::<(), crate::CliError>(()))?;
    let scan_secs = t.elapsed().as_secs_f64();
    if scanned != queried {
        return Err(crate::CliError::failure(format!(
            "bench: scan saw {scanned} items, queries {queried}"
        )));
    }
    let disk_bytes = kstone_core::fsio::tree_bytes(dir);
    db.close()?;
    Ok(Run {
        mode: match mode {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Buffered => "buffered",
        },
        writes: last_lsn,
        write_secs,
        written,
        reads: n,
        read_secs,
        queries: parts,
        query_items: queried,
        query_secs,
        scanned,
        scan_secs,
        open_secs,
        disk_bytes,
        missing,
        missing_secs,
        replay,
    })
}

pub fn run(args: &BenchArgs) -> CliResult<Exit> {
    SEQUENTIAL.store(
        args.workload == Workload::Fillseq,
        std::sync::atomic::Ordering::Relaxed,
    );
    let scratch;
    let base: PathBuf = match &args.dir {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let mut runs = Vec::new();
    let modes = if args.workload == Workload::Fillsync {
        vec![DurabilityArg::Sync]
    } else {
        args.durability.clone()
    };
    for &mode in &modes {
        let n = match mode {
            DurabilityArg::Sync => args.sync_num.unwrap_or(args.num),
            DurabilityArg::Buffered => args.num,
        };
        let dir = base.join(format!("bench-{mode:?}.keystone").to_lowercase());
        if dir.exists() {
            return Err(crate::CliError::failure(format!(
                "{} already exists; bench only writes into new directories",
                dir.display()
            )));
        }
        runs.push(run_one(&dir, mode, n, args)?);
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if args.json {
        let v: Vec<_> = runs
            .iter()
            .map(|r| {
                json!({
                    "durability": r.mode, "threads": args.threads, "value_size": args.value_size,
                    "writes": r.writes, "write_secs": r.write_secs,
                    "write_ops_per_sec": r.writes as f64 / r.write_secs,
                    "reads": r.reads, "read_secs": r.read_secs,
                    "read_ops_per_sec": r.reads as f64 / r.read_secs,
                    "queries": r.queries, "query_items": r.query_items, "query_secs": r.query_secs,
                    "query_items_per_sec": r.query_items as f64 / r.query_secs,
                    "scanned": r.scanned, "scan_secs": r.scan_secs,
                    "scan_items_per_sec": r.scanned as f64 / r.scan_secs,
                    "open_secs": r.open_secs, "disk_bytes": r.disk_bytes,
                    "peak_rss_kib": peak_rss_kib(), "block_cache_mb": args.block_cache_mb,
                    "written_bytes": r.written,
                    "write_amplification": (r.written.wal + r.written.flush + r.written.compaction) as f64
                        / (r.writes * (16 + args.value_size as u64)) as f64,
                    "readmissing_ops_per_sec": r.missing as f64 / r.missing_secs,
                    "archive": r.replay.as_ref().map(|(n, secs, lags)| json!({
                        "replayed_writes": n, "pitr_restore_secs": secs,
                        "replay_writes_per_sec": *n as f64 / secs,
                        "lag_samples": lags.len(),
                        "lag_p50_secs": pct(lags, 0.5), "lag_p99_secs": pct(lags, 0.99),
                        "lag_max_secs": lags.last().copied().unwrap_or(0.0),
                    })),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<9} {:>7} {:>9} {:>12} {:>12} {:>11} {:>13} {:>12} {:>7} {:>9}",
            "mode",
            "threads",
            "items",
            "write ops/s",
            "read ops/s",
            "queries/s",
            "query items/s",
            "scan items/s",
            "open s",
            "disk MiB"
        );
        for r in &runs {
            println!(
                "{:<9} {:>7} {:>9} {:>12.0} {:>12.0} {:>11.0} {:>13.0} {:>12.0} {:>7.3} {:>9.1}",
                r.mode,
                args.threads,
                r.writes,
                r.writes as f64 / r.write_secs,
                r.reads as f64 / r.read_secs,
                r.queries as f64 / r.query_secs,
                r.query_items as f64 / r.query_secs,
                r.scanned as f64 / r.scan_secs,
                r.open_secs,
                r.disk_bytes as f64 / (1 << 20) as f64
            );
        }
        for r in &runs {
            if let Some((n, secs, lags)) = &r.replay {
                println!(
                    "archiving ({}): lag p50 {:.2} s, p99 {:.2} s, max {:.2} s over {} samples; \
                     point-in-time restore replayed {n} writes in {secs:.2} s ({:.0} writes/s, including restore and verification)",
                    r.mode,
                    pct(lags, 0.5),
                    pct(lags, 0.99),
                    lags.last().copied().unwrap_or(0.0),
                    lags.len(),
                    *n as f64 / secs
                );
            }
        }
        for r in &runs {
            println!(
                "{} readmissing: {:.0} lookups/s of absent keys ({} lookups)",
                r.mode,
                r.missing as f64 / r.missing_secs,
                r.missing
            );
        }
        for r in &runs {
            let user = r.writes * (16 + args.value_size as u64);
            let w = r.written;
            println!(
                "{} write amplification: {:.2} ({:.1} MiB WAL + {:.1} MiB flushed + {:.1} MiB compacted for {:.1} MiB of keys and values written)",
                r.mode,
                (w.wal + w.flush + w.compaction) as f64 / user as f64,
                w.wal as f64 / 1048576.0,
                w.flush as f64 / 1048576.0,
                w.compaction as f64 / 1048576.0,
                user as f64 / 1048576.0
            );
        }
        if let Some(kib) = peak_rss_kib() {
            println!(
                "peak RSS of this process: {:.1} MiB (block cache {} MiB)",
                kib as f64 / 1024.0,
                args.block_cache_mb
            );
        }
        println!("workload: {:?}", args.workload);
        println!("keys: 8-byte partition + 8-byte sort key ({PER_PARTITION} items per partition); values: {} random bytes", args.value_size);
    }
    Ok(Exit::Success)
}

/// `VmHWM` of this process (Linux).
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
