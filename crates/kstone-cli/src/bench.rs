//! `kstone bench`: db_bench-style throughput of writes and reads, with fixed
//! seeds, 16-byte keys and incompressible values.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kstone_core::{Database, Durability, Item, Options, Query, Value};
use serde_json::json;

use crate::args::{BenchArgs, DurabilityArg};
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
fn key(i: u64, n: u64) -> ([u8; 8], [u8; 8]) {
    (pk(i % partitions(n)), hex8(mix(i)))
}

fn pk(p: u64) -> [u8; 8] {
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

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

struct Run {
    mode: &'static str,
    writes: u64,
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
}

fn run_one(dir: &Path, mode: DurabilityArg, n: u64, args: &BenchArgs) -> CliResult<Run> {
    let opts = Options {
        durability: match mode {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Buffered => Durability::Buffered,
        },
        ..Options::default()
    };
    let db = Database::create(dir, opts.clone())?;
    let threads = args.threads.max(1) as u64;
    let t = Instant::now();
    std::thread::scope(|s| -> CliResult {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let db = &db;
                s.spawn(move || -> kstone_core::Result<()> {
                    let mut i = th;
                    while i < n {
                        let (p, s) = key(i, n);
                        db.put(&p, Some(&s), &value(i, args.value_size))?;
                        i += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| crate::CliError("writer thread panicked".into()))??;
        }
        Ok(())
    })?;
    db.sync()?;
    let write_secs = t.elapsed().as_secs_f64();
    db.close()?;

    let t = Instant::now();
    let db = Database::open(dir, opts)?;
    let open_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut x = 42u64;
    for _ in 0..n {
        x = mix(x);
        let i = x % n;
        let (p, s) = key(i, n);
        if db.get(&p, Some(&s))?.is_none() {
            return Err(crate::CliError(format!(
                "bench: item {i} missing after reopen"
            )));
        }
    }
    let read_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut queried = 0u64;
    let parts = partitions(n);
    for p in 0..parts {
        queried += db.query(&Query::new(&pk(p)))?.items.len() as u64;
    }
    let query_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let scanned = crate::commands::for_each_item(&db, |_, _| Ok(()))?;
    let scan_secs = t.elapsed().as_secs_f64();
    if scanned != queried {
        return Err(crate::CliError(format!(
            "bench: scan saw {scanned} items, queries {queried}"
        )));
    }
    let disk_bytes = dir_bytes(dir);
    db.close()?;
    Ok(Run {
        mode: match mode {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Buffered => "buffered",
        },
        writes: n,
        write_secs,
        reads: n,
        read_secs,
        queries: parts,
        query_items: queried,
        query_secs,
        scanned,
        scan_secs,
        open_secs,
        disk_bytes,
    })
}

pub fn run(args: &BenchArgs) -> CliResult<ExitCode> {
    let scratch;
    let base: PathBuf = match &args.dir {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let mut runs = Vec::new();
    for &mode in &args.durability {
        let n = match mode {
            DurabilityArg::Sync => args.sync_num.unwrap_or(args.num),
            DurabilityArg::Buffered => args.num,
        };
        let dir = base.join(format!("bench-{mode:?}.keystone").to_lowercase());
        if dir.exists() {
            return Err(crate::CliError(format!(
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
        println!("keys: 8-byte partition + 8-byte sort key ({PER_PARTITION} items per partition); values: {} random bytes", args.value_size);
    }
    Ok(ExitCode::SUCCESS)
}
