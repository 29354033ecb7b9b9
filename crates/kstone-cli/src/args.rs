//! Command-line syntax (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kstone",
    version,
    about = "KeystoneDB: an embedded DynamoDB-style database with backup and recovery built in",
    long_about = "KeystoneDB: an embedded DynamoDB-style database with backup and recovery built in.\n\n\
Exit codes: 0 success, 1 the operation failed (or an item was not found), 2 usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How a write is acknowledged.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityArg {
    /// Each write is fsynced before it is acknowledged (group commit).
    Sync,
    /// Writes reach the OS at once and are fsynced every 100 ms.
    Buffered,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new, empty database directory.
    Create {
        /// Database directory (by convention `NAME.keystone`).
        db: PathBuf,
    },
    /// Store an item (replacing any item with the same key).
    Put {
        db: PathBuf,
        /// Partition key.
        pk: String,
        /// Sort key.
        #[arg(long)]
        sk: Option<String>,
        /// The item as a JSON object (plain JSON, or DynamoDB JSON with --typed).
        json: String,
        /// Parse JSON as DynamoDB-typed JSON: {"a": {"S": "x"}, "n": {"N": "1"}}.
        #[arg(long)]
        typed: bool,
    },
    /// Print an item as JSON; exits 1 with "not found" if absent.
    Get {
        db: PathBuf,
        pk: String,
        #[arg(long)]
        sk: Option<String>,
        /// Print DynamoDB-typed JSON (lossless) instead of plain JSON.
        #[arg(long)]
        typed: bool,
    },
    /// Delete an item (succeeds even if it did not exist).
    Delete {
        db: PathBuf,
        pk: String,
        #[arg(long)]
        sk: Option<String>,
    },
    /// Show sizes, file counts and the last LSN of a database.
    Stats {
        db: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Flush all memtables to SST files.
    Flush { db: PathBuf },
    /// Measure write and read throughput (db_bench style) in a scratch directory.
    Bench(BenchArgs),
}

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
    /// Writer threads (sync mode shares fsyncs between them by group commit).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Writes per sync-mode run (fsync-bound; default: same as --num).
    #[arg(long)]
    pub sync_num: Option<u64>,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
}
