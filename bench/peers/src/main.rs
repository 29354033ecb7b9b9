//! `kstone-peers`: the same db_bench-style workloads on KeystoneDB and the
//! current releases of RocksDB (defaults, and with a bloom filter), fjall,
//! redb and sled in one run, each workload in a fresh process, for each key
//! shape and value size; then KeystoneDB's ratio to the best peer. See
//! `docs/benchmarks.md`.
//!
//! ```text
//! kstone-peers [--num N] [--cache-mb MB] [--engines a,b] [--workloads a,b]
//!              [--keys random,padded] [--value-size 100,1024]
//!              [--dir DIR] [--json FILE]
//! ```

mod engines;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use engines::{Res, ENGINES};
use serde_json::Value;
use workload::{Keys, Spec};

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
    keys: Vec<Keys>,
    value_sizes: Vec<usize>,
    cache_mb: usize,
    engines: Vec<String>,
    workloads: Vec<String>,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        num: 1_000_000,
        keys: vec![Keys::Random, Keys::Padded],
        value_sizes: vec![100],
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
            "--keys" => a.keys = val()?.split(',').map(Keys::parse).collect::<Res<_>>()?,
            "--value-size" => {
                a.value_sizes = val()?
                    .split(',')
                    .map(|v| v.parse::<usize>())
                    .collect::<Result<_, _>>()?
            }
            "--engines" => a.engines = val()?.split(',').map(String::from).collect(),
            "--workloads" => a.workloads = val()?.split(',').map(String::from).collect(),
            "--dir" => a.dir = Some(val()?.into()),
            "--json" => a.json = Some(val()?.into()),
            "-h" | "--help" => {
                println!(
                    "kstone-peers: KeystoneDB vs RocksDB, fjall, redb, sled on the same workloads\n\n\
                     --num N          keys per workload (default 1000000; sync workloads do N/100, at least 1000)\n\
                     --keys LIST      key shapes, from {} (default both): random = 8 hashed bytes + index,\n\
                     \x20                padded = zero-padded decimal ids (long common prefixes)\n\
                     --value-size LIST value sizes in bytes (default 100; e.g. 100,1024)\n\
                     --cache-mb MB    block cache of every engine (default 32)\n\
                     --engines LIST   comma-separated, from {}\n\
                     --workloads LIST comma-separated, from {}\n\
                     --dir DIR        where databases go (default: a temporary directory)\n\
                     --json FILE      also write every result as JSON\n\n\
                     kstone stores the 16-byte key as its partition key, kstone-sk as partition + sort key.",
                    Keys::ALL.join(","),
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
    if a.num >= workload::PERMUTE_PRIME {
        return Err(format!("--num must be below {}", workload::PERMUTE_PRIME).into());
    }
    if a.value_sizes.contains(&0) {
        return Err("--value-size must be at least 1".into());
    }
    Ok(a)
}

/// Run one workload in a child process; returns its JSON result.
fn child(engine: &str, workload: &str, dir: &Path, s: Spec, cache: usize) -> Res<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--child", engine, workload])
        .arg(dir)
        .args([
            s.n.to_string(),
            cache.to_string(),
            s.keys.name().to_string(),
            s.value_len.to_string(),
        ])
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

fn run_engine(engine: &str, a: &Args, s: Spec, base: &Path) -> Res<BTreeMap<String, Value>> {
    let cache = a.cache_mb << 20;
    let mut res = BTreeMap::new();
    let filled = base.join(format!("{engine}-fillrandom"));
    for w in &a.workloads {
        let reads = matches!(w.as_str(), "readrandom" | "readmissing" | "scan");
        if reads && !filled.exists() {
            eprintln!("  {engine}: filling a database for the read workloads");
            child(engine, "fillrandom", &filled, s, cache)?;
        }
        let dir = if reads {
            filled.clone()
        } else {
            base.join(format!("{engine}-{w}"))
        };
        if w == "open" {
            child(engine, "fillwal", &dir, s, cache)?;
        }
        let r = child(engine, w, &dir, s, cache)?;
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
        let [_, _, engine, workload, dir, n, cache, keys, value_len] = &argv[..] else {
            return Err("usage: --child ENGINE WORKLOAD DIR N CACHE KEYS VALUE_LEN".into());
        };
        let s = Spec {
            keys: Keys::parse(keys)?,
            n: n.parse()?,
            value_len: value_len.parse()?,
        };
        return workload::run(engine, workload, Path::new(dir), s, cache.parse()?);
    }
    let a = parse_args()?;
    let scratch = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    // shape ("padded-100") -> engine -> workload -> result
    let mut runs: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
    for &keys in &a.keys {
        for &value_len in &a.value_sizes {
            let s = Spec {
                keys,
                n: a.num,
                value_len,
            };
            let shape = format!("{}-{value_len}", keys.name());
            let mut all = BTreeMap::new();
            for e in &a.engines {
                eprintln!("{shape} {e}:");
                all.insert(e.clone(), run_engine(e, &a, s, scratch.path())?);
            }
            print_table(&a, s, &all);
            runs.insert(shape, all);
        }
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&runs)?)?;
    }
    Ok(())
}

fn num(v: Option<&Value>, field: &str) -> Option<f64> {
    v?.get(field)?.as_f64()
}

/// KeystoneDB's columns (`kstone`, `kstone-sk`) and the rest.
fn is_kstone(engine: &str) -> bool {
    engine.starts_with("kstone")
}

fn print_table(a: &Args, s: Spec, all: &BTreeMap<String, BTreeMap<String, Value>>) {
    let ours: Vec<&String> = a.engines.iter().filter(|e| is_kstone(e)).collect();
    println!(
        "\n{} keys ({} shape, 16 B) x {} B values, {} MiB block cache; sync workloads: {} writes",
        a.num,
        s.keys.name(),
        s.value_len,
        a.cache_mb,
        workload::sync_ops(a.num)
    );
    print!("{:<12}", "workload");
    for e in &a.engines {
        print!(" {:>13}", e);
    }
    if !ours.is_empty() {
        print!(" {:>13}", "best peer");
    }
    for k in &ours {
        print!(" {:>13}", format!("{k}/best"));
    }
    println!();
    // Ratios: ours / best peer, oriented so that above 1 = KeystoneDB ahead.
    let row =
        |label: &str, vals: Vec<Option<f64>>, higher_better: bool, fmt: &dyn Fn(f64) -> String| {
            print!("{label:<12}");
            for v in &vals {
                print!(" {:>13}", v.map_or("-".into(), fmt));
            }
            let best = a
                .engines
                .iter()
                .zip(&vals)
                .filter(|(e, v)| !is_kstone(e) && v.is_some_and(|v| v > 0.0))
                .map(|(e, v)| (e, v.unwrap_or(0.0)))
                .reduce(|x, y| {
                    let y_better = if higher_better { y.1 > x.1 } else { y.1 < x.1 };
                    if y_better {
                        y
                    } else {
                        x
                    }
                });
            if !ours.is_empty() {
                print!(" {:>13}", best.map_or("-".into(), |(e, _)| e.to_string()));
            }
            for k in &ours {
                let kv = a.engines.iter().position(|e| e == *k).and_then(|i| vals[i]);
                let ratio = match (kv, best) {
                    (Some(kv), Some((_, pv))) if kv > 0.0 => {
                        Some(if higher_better { kv / pv } else { pv / kv })
                    }
                    _ => None,
                };
                print!(" {:>13}", ratio.map_or("-".into(), |r| format!("{r:.2}x")));
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
    let user = (2 * a.num * (workload::KEY_LEN + s.value_len) as u64) as f64;
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
        "\nratio = KeystoneDB vs the best peer on that row, above 1 = KeystoneDB ahead\n\
         (ops/s: ours / best; open, write amplification, disk and RSS: best / ours)."
    );
}
