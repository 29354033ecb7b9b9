//! `kstone bench`: db_bench-style throughput of writes and reads, with fixed
//! seeds, 16-byte keys and incompressible values.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kstone_core::{Database, Durability, Item, Options, Value};
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

/// 16-byte key of the i-th item.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{:016x}", mix(i)).as_bytes());
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
                        db.put(&key(i), None, &value(i, args.value_size))?;
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
        if db.get(&key(i), None)?.is_none() {
            return Err(crate::CliError(format!(
                "bench: item {i} missing after reopen"
            )));
        }
    }
    let read_secs = t.elapsed().as_secs_f64();
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
                    "open_secs": r.open_secs, "disk_bytes": r.disk_bytes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<9} {:>8} {:>10} {:>14} {:>14} {:>9} {:>12}",
            "mode", "threads", "items", "write ops/s", "read ops/s", "open s", "disk MiB"
        );
        for r in &runs {
            println!(
                "{:<9} {:>8} {:>10} {:>14.0} {:>14.0} {:>9.3} {:>12.1}",
                r.mode,
                args.threads,
                r.writes,
                r.writes as f64 / r.write_secs,
                r.reads as f64 / r.read_secs,
                r.open_secs,
                r.disk_bytes as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
