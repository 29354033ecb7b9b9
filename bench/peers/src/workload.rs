//! db_bench-style workloads with fixed seeds: 16-byte keys in one of two
//! shapes, incompressible values of a chosen size. Each runs in its own
//! process (so peak RSS and bytes written are that workload's alone) and
//! prints one JSON line.

use std::path::Path;
use std::time::Instant;

use crate::engines::{open, Engine, Res};

pub const KEY_LEN: usize = 16;

/// splitmix64: the same keys and values in every run and for every engine.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the keys look like.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keys {
    /// 8 hashed bytes then the big-endian index (ascending for `fillseq`,
    /// where 100 keys share the first 8 bytes).
    Random,
    /// Zero-padded decimal ids, `0000000000123456`: long common prefixes,
    /// the shape of `user#0000012345` keys. Written ids are even, so a
    /// missing key (an odd id) lies between written ones.
    Padded,
}

impl Keys {
    pub const ALL: [&'static str; 2] = ["random", "padded"];

    pub fn parse(s: &str) -> Res<Keys> {
        match s {
            "random" => Ok(Keys::Random),
            "padded" => Ok(Keys::Padded),
            other => Err(format!("unknown key shape {other} (random or padded)").into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Keys::Random => "random",
            Keys::Padded => "padded",
        }
    }

    /// The i-th of `n` keys, in ascending order for `sequential`, else in a
    /// fixed random order.
    pub fn key(self, i: u64, n: u64, sequential: bool) -> [u8; KEY_LEN] {
        match self {
            Keys::Random => {
                let mut k = [0u8; KEY_LEN];
                let hi = if sequential { i / 100 } else { mix(i) };
                k[..8].copy_from_slice(&hi.to_be_bytes());
                k[8..].copy_from_slice(&i.to_be_bytes());
                k
            }
            Keys::Padded => {
                let id = if sequential { i } else { permute(i, n) };
                padded(2 * id)
            }
        }
    }

    /// A key no workload writes (the j-th).
    pub fn missing(self, j: u64, n: u64) -> [u8; KEY_LEN] {
        match self {
            Keys::Random => {
                let mut k = [0u8; KEY_LEN];
                k[..8].copy_from_slice(&mix(j ^ 0xdead_beef).to_be_bytes());
                k[8..].copy_from_slice(&(u64::MAX - j).to_be_bytes());
                k
            }
            Keys::Padded => padded(2 * permute(j % n, n) + 1),
        }
    }

    /// Where KeystoneDB's partition key ends in `kstone-sk`, which stores
    /// the key as partition + sort key: 8 bytes of the random shape (100
    /// items per partition in `fillseq`), or 12 digits of an id (5,000 ids
    /// per partition).
    pub fn partition_len(self) -> usize {
        match self {
            Keys::Random => 8,
            Keys::Padded => 12,
        }
    }
}

fn padded(mut id: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    for d in k.iter_mut().rev() {
        *d = b'0' + (id % 10) as u8;
        id /= 10;
    }
    k
}

/// A prime (Knuth's multiplicative hash constant): every `n` below it is
/// coprime to it, so `permute` is a bijection.
pub const PERMUTE_PRIME: u64 = 2_654_435_761;

/// A bijection of `0..n` (for `n < PERMUTE_PRIME`), so a random-order fill
/// still writes every id exactly once.
fn permute(i: u64, n: u64) -> u64 {
    let n = n.max(1) as u128;
    ((i as u128 * PERMUTE_PRIME as u128 + 12_345) % n) as u64
}

pub fn value(i: u64, pass: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = i ^ (pass << 40) ^ 0x5eed;
    while v.len() < len {
        x = mix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Operations a sync workload performs: each one waits for an fsync.
pub fn sync_ops(n: u64) -> u64 {
    (n / 100).max(1000)
}

pub fn dir_bytes(p: &Path) -> u64 {
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

/// Peak resident set of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    proc_field("/proc/self/status", "VmHWM:") * 1024
}

/// Bytes this process passed to write(2) and friends so far (`wchar`).
fn written_bytes() -> u64 {
    proc_field("/proc/self/io", "wchar:")
}

fn proc_field(file: &str, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l[name.len()..].split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The data a workload writes: `n` keys of one shape, values of one size.
#[derive(Clone, Copy)]
pub struct Spec {
    pub keys: Keys,
    pub n: u64,
    pub value_len: usize,
}

/// Write keys `i ≡ t (mod threads)` of `0..n` from `threads` threads.
fn fill(db: &dyn Engine, s: Spec, threads: u64, seq: bool, sync: bool, pass: u64) -> Res<()> {
    std::thread::scope(|scope| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Res<()> {
                    let mut i = t;
                    while i < s.n {
                        let k = s.keys.key(i, s.n, seq);
                        db.put(&k, &value(i, pass, s.value_len), sync)?;
                        i += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .try_for_each(|h| h.join().map_err(|_| "writer thread panicked")?)
    })
}

/// Run one workload in this process and print its result as JSON.
pub fn run(engine: &str, workload: &str, dir: &Path, s: Spec, cache: usize) -> Res<()> {
    let sync = workload.starts_with("fillsync");
    let t_open = Instant::now();
    let db = open(engine, dir, cache, sync, s.keys)?;
    let open_secs = t_open.elapsed().as_secs_f64();
    let w0 = written_bytes();
    let t = Instant::now();
    let n = s.n;
    let mut ops = n;
    match workload {
        "fillseq" => fill(&*db, s, 1, true, false, 0)?,
        "fillrandom" => fill(&*db, s, 1, false, false, 0)?,
        "fillrandom4" => fill(&*db, s, 4, false, false, 0)?,
        "fillsync1" | "fillsync4" => {
            ops = sync_ops(n);
            let threads = if workload == "fillsync4" { 4 } else { 1 };
            fill(&*db, Spec { n: ops, ..s }, threads, false, true, 0)?
        }
        "batch" => {
            let mut b = Vec::with_capacity(1000);
            for i in 0..n {
                b.push((s.keys.key(i, n, false), value(i, 0, s.value_len)));
                if b.len() == 1000 {
                    db.batch(&b)?;
                    b.clear();
                }
            }
            if !b.is_empty() {
                db.batch(&b)?;
            }
        }
        "overwrite" => {
            fill(&*db, s, 1, false, false, 0)?;
            fill(&*db, s, 1, false, false, 1)?;
            ops = 2 * n;
        }
        "fillwal" => {
            // Leave a large unflushed log behind: durable, then exit without closing.
            fill(&*db, s, 1, false, false, 0)?;
            db.durable()?;
            report(
                engine,
                workload,
                n,
                t.elapsed().as_secs_f64(),
                dir,
                w0,
                open_secs,
                db.mapped_written()?,
            );
            std::process::exit(0);
        }
        "open" => {
            ops = 1;
            if db.get(&s.keys.key(0, n, false))?.is_none() {
                return Err("open: the first key is missing".into());
            }
        }
        "readrandom" => {
            let mut x = 42u64;
            for _ in 0..n {
                x = mix(x);
                let i = x % n;
                if db.get(&s.keys.key(i, n, false))? != Some(s.value_len) {
                    return Err(format!("readrandom: key {i} missing").into());
                }
            }
        }
        "readmissing" => {
            for j in 0..n {
                if db.get(&s.keys.missing(j, n))?.is_some() {
                    return Err("readmissing: found a key never written".into());
                }
            }
        }
        "scan" => {
            let seen = db.scan()?;
            if seen != n {
                return Err(format!("scan saw {seen} items, expected {n}").into());
            }
        }
        other => return Err(format!("unknown workload {other}").into()),
    }
    if workload.starts_with("fill") || workload == "batch" || workload == "overwrite" {
        db.durable()?;
    }
    let secs = t.elapsed().as_secs_f64();
    let mapped = db.mapped_written()?;
    drop(db);
    report(engine, workload, ops, secs, dir, w0, open_secs, mapped);
    Ok(())
}

/// `mapped`: bytes the engine wrote through memory maps (not in `wchar`).
#[allow(clippy::too_many_arguments)]
fn report(
    engine: &str,
    workload: &str,
    ops: u64,
    secs: f64,
    dir: &Path,
    w0: u64,
    open_secs: f64,
    mapped: u64,
) {
    println!(
        "{}",
        serde_json::json!({
            "engine": engine,
            "workload": workload,
            "ops": ops,
            "secs": secs,
            "ops_per_sec": ops as f64 / secs.max(1e-9),
            "open_secs": open_secs,
            "disk_bytes": dir_bytes(dir),
            "peak_rss": peak_rss(),
            "written": written_bytes().saturating_sub(w0) + mapped,
        })
    );
}
