//! `kstone-peers`: the same db_bench-style workloads on KeystoneDB, RocksDB,
//! fjall, redb and sled in one run, each workload in a fresh process, and
//! KeystoneDB's ratio to each peer. See `docs/benchmarks.md`.
//!
//! ```text
//! kstone-peers [--num N] [--cache-mb MB] [--engines a,b] [--workloads a,b]
//!              [--dir DIR] [--json FILE]
//! ```

mod engines;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use engines::{Res, ENGINES};
use serde_json::Value;

/// Workloads in run order; the read workloads use `fillrandom`'s database.
const WORKLOADS: [&str; 11] = [
    "fillseq",
    "fillrandom",
    "readrandom",
    "readmissing",
    "scan",
    "fillrandom4",
    "batch",
    "fillsync1",
    "fillsync4",
    "overwrite",
    "open",
];

struct Args {
    num: u64,
    cache_mb: usize,
    engines: Vec<String>,
    workloads: Vec<String>,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        num: 1_000_000,
        cache_mb: 32,
        engines: ENGINES.iter().map(|s| s.to_string()).collect(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        dir: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--num" => a.num = val()?.parse()?,
            "--cache-mb" => a.cache_mb = val()?.parse()?,
            "--engines" => a.engines = val()?.split(',').map(String::from).collect(),
            "--workloads" => a.workloads = val()?.split(',').map(String::from).collect(),
            "--dir" => a.dir = Some(val()?.into()),
            "--json" => a.json = Some(val()?.into()),
            "-h" | "--help" => {
                println!(
                    "kstone-peers: KeystoneDB vs RocksDB, fjall, redb, sled on the same workloads\n\n\
                     --num N          keys per workload (default 1000000; sync workloads do N/100, at least 1000)\n\
                     --cache-mb MB    block cache of every engine (default 32)\n\
                     --engines LIST   comma-separated, from {}\n\
                     --workloads LIST comma-separated, from {}\n\
                     --dir DIR        where databases go (default: a temporary directory)\n\
                     --json FILE      also write every result as JSON",
                    ENGINES.join(","),
                    WORKLOADS.join(",")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)").into()),
        }
    }
    for e in &a.engines {
        if !ENGINES.contains(&e.as_str()) {
            return Err(format!("unknown engine {e}").into());
        }
    }
    for w in &a.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!("unknown workload {w}").into());
        }
    }
    Ok(a)
}

/// Run one workload in a child process; returns its JSON result.
fn child(engine: &str, workload: &str, dir: &Path, n: u64, cache: usize) -> Res<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--child", engine, workload])
        .arg(dir)
        .args([n.to_string(), cache.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{engine} {workload} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)?)
}

fn run_engine(engine: &str, a: &Args, base: &Path) -> Res<BTreeMap<String, Value>> {
    let cache = a.cache_mb << 20;
    let mut res = BTreeMap::new();
    let filled = base.join(format!("{engine}-fillrandom"));
    for w in &a.workloads {
        let reads = matches!(w.as_str(), "readrandom" | "readmissing" | "scan");
        if reads && !filled.exists() {
            eprintln!("  {engine}: filling a database for the read workloads");
            child(engine, "fillrandom", &filled, a.num, cache)?;
        }
        let dir = if reads {
            filled.clone()
        } else {
            base.join(format!("{engine}-{w}"))
        };
        if w == "open" {
            child(engine, "fillwal", &dir, a.num, cache)?;
        }
        let r = child(engine, w, &dir, a.num, cache)?;
        eprintln!(
            "  {engine} {w}: {:.0} ops/s",
            r["ops_per_sec"].as_f64().unwrap_or(0.0)
        );
        res.insert(w.clone(), r);
        if !reads && w != "fillrandom" {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let _ = std::fs::remove_dir_all(&filled);
    Ok(res)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("kstone-peers: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child") {
        let [_, _, engine, workload, dir, n, cache] = &argv[..] else {
            return Err("usage: --child ENGINE WORKLOAD DIR N CACHE".into());
        };
        return workload::run(engine, workload, Path::new(dir), n.parse()?, cache.parse()?);
    }
    let a = parse_args()?;
    let scratch = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let mut all: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for e in &a.engines {
        eprintln!("{e}:");
        all.insert(e.clone(), run_engine(e, &a, scratch.path())?);
    }
    print_table(&a, &all);
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}

fn num(v: Option<&Value>, field: &str) -> Option<f64> {
    v?.get(field)?.as_f64()
}

fn print_table(a: &Args, all: &BTreeMap<String, BTreeMap<String, Value>>) {
    let peers: Vec<&String> = a.engines.iter().filter(|e| *e != "kstone").collect();
    let k = all.get("kstone");
    println!(
        "\n{} keys (16 B) x 100 B values, {} MiB block cache; sync workloads: {} writes",
        a.num,
        a.cache_mb,
        workload::sync_ops(a.num)
    );
    print!("{:<12}", "workload");
    for e in &a.engines {
        print!(" {:>12}", e);
    }
    for p in &peers {
        print!(" {:>10}", format!("vs {p}"));
    }
    println!();
    let row =
        |label: &str, vals: Vec<Option<f64>>, higher_better: bool, fmt: &dyn Fn(f64) -> String| {
            print!("{label:<12}");
            for v in &vals {
                print!(" {:>12}", v.map_or("-".into(), fmt));
            }
            let kv = if a.engines.first().map(String::as_str) == Some("kstone") || k.is_some() {
                a.engines
                    .iter()
                    .position(|e| e == "kstone")
                    .and_then(|i| vals[i])
            } else {
                None
            };
            for p in &peers {
                let pv = a.engines.iter().position(|e| e == *p).and_then(|i| vals[i]);
                let ratio = match (kv, pv) {
                    (Some(kv), Some(pv)) if kv > 0.0 && pv > 0.0 => {
                        Some(if higher_better { kv / pv } else { pv / kv })
                    }
                    _ => None,
                };
                print!(" {:>10}", ratio.map_or("-".into(), |r| format!("{r:.2}x")));
            }
            println!();
        };
    for w in &a.workloads {
        let vals: Vec<Option<f64>> = a
            .engines
            .iter()
            .map(|e| {
                let r = all.get(e).and_then(|m| m.get(w));
                if w == "open" {
                    num(r, "open_secs")
                } else {
                    num(r, "ops_per_sec")
                }
            })
            .collect();
        if w == "open" {
            row("open (s)", vals, false, &|v| format!("{v:.3}"));
        } else {
            row(w, vals, true, &|v| format!("{v:.0}"));
        }
    }
    let metric = |w: &str, f: &dyn Fn(&Value) -> Option<f64>| -> Vec<Option<f64>> {
        a.engines
            .iter()
            .map(|e| all.get(e).and_then(|m| m.get(w)).and_then(f))
            .collect()
    };
    let user = (2 * a.num * (workload::KEY_LEN + workload::VALUE_LEN) as u64) as f64;
    if a.workloads.iter().any(|w| w == "overwrite") {
        let wa = metric("overwrite", &|r| Some(r["written"].as_f64()? / user));
        row("write amp", wa, false, &|v| format!("{v:.2}"));
        let disk = metric("overwrite", &|r| {
            Some(r["disk_bytes"].as_f64()? / 1048576.0)
        });
        row("disk MiB", disk, false, &|v| format!("{v:.1}"));
    }
    if a.workloads.iter().any(|w| w == "readrandom") {
        let rss = metric("readrandom", &|r| Some(r["peak_rss"].as_f64()? / 1048576.0));
        row("read RSS MiB", rss, false, &|v| format!("{v:.0}"));
    }
    println!(
        "\nops/s and ratios: higher is better for KeystoneDB (ratio = KeystoneDB / peer);\n\
         open, write amplification, disk and RSS: ratio = peer / KeystoneDB (above 1 = KeystoneDB smaller)."
    );
}
