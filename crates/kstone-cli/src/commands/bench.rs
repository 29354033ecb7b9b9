//! `kstone bench`: write and read throughput (the work is in `crate::bench`).

use std::path::PathBuf;

use clap::ValueEnum;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

/// The keys `kstone bench` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchKeys {
    Bytes,
    Typed,
}

/// The write phase of `kstone bench`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Fillrandom,
    Fillseq,
    Batch,
    /// fillrandom, then every key written again with a new value (for
    /// write amplification).
    Overwrite,
    /// fillrandom with each write durable before the next (sync mode only,
    /// whatever --durability says; --threads writers share fsyncs).
    Fillsync,
}

/// How a write is acknowledged.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityArg {
    /// Each write is fsynced before it is acknowledged (group commit).
    Sync,
    /// Writes reach the OS at once and are fsynced every 100 ms.
    Buffered,
}

/// Measure write and read throughput (db_bench style) in a scratch directory.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Directory to create the benchmark database in (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Number of items to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,
    /// Value size in bytes (incompressible).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Durability modes to run, each on a fresh database.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [DurabilityArg::Buffered, DurabilityArg::Sync])]
    pub durability: Vec<DurabilityArg>,
    /// Block cache for point lookups, in MiB (0 = none).
    #[arg(long, default_value_t = 32)]
    pub block_cache_mb: usize,
    /// Writer threads (sync mode shares fsyncs between them by group commit).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Writes per sync-mode run (fsync-bound; default: same as --num).
    #[arg(long)]
    pub sync_num: Option<u64>,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
    /// How the items are written: random order, ascending order, or in
    /// batches of 1000 (`write_batch`).
    #[arg(long, value_enum, default_value_t = Workload::Fillrandom)]
    pub workload: Workload,
    /// Keys: `bytes` (8 hex bytes of partition and sort key, as before typed
    /// keys) or `typed` (S partition keys, N sort keys: what typed keys cost).
    #[arg(long, value_enum, default_value_t = BenchKeys::Bytes)]
    pub keys: BenchKeys,
    /// Also measure WAL archiving: archive into this repository during the
    /// buffered fill (1 s interval), report the archive lag, then time a
    /// point-in-time restore that replays every write.
    #[arg(long, value_name = "REPO")]
    pub archive: Option<String>,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone bench`.
pub fn run(a: &BenchArgs) -> CliResult<Exit> {
    crate::bench::run(a)
}
