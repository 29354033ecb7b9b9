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
    /// Flush, then merge every stripe's SST files into one (drops overwritten
    /// versions and tombstones).
    Compact { db: PathBuf },
    /// Items of one partition, optionally filtered by a sort-key condition;
    /// one JSON object per line.
    Query(QueryArgs),
    /// Every item of the database (or one segment of a parallel scan); one
    /// JSON object per line.
    Scan(ScanArgs),
    /// Write every item as lossless JSON lines (typed values, binary keys kept).
    Export {
        db: PathBuf,
        /// Output file (written atomically); default: standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Load items from JSON lines as written by `export` (FILE or - for stdin).
    /// The whole input is checked first: a bad line aborts with its line
    /// number and nothing imported.
    Import {
        db: PathBuf,
        /// Input file, or - for standard input.
        input: String,
    },
    /// Backups: create, list, inspect, verify and export them.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Restore a backup (or an exported archive) into a directory. The target
    /// is built beside the destination, verified, then swapped in; an existing
    /// database there is moved to DIR.before-restore-TIME, never deleted.
    Restore(RestoreArgs),
    /// Measure write and read throughput (db_bench style) in a scratch directory.
    Bench(BenchArgs),
}

/// Kind of backup.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupTypeArg {
    /// Every file of the snapshot.
    Full,
    /// Files the previous backup of this database did not have.
    Incremental,
    /// Files the last full backup did not have.
    Differential,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Create a backup repository at an empty location.
    Init {
        /// Repository location (a directory).
        #[arg(long)]
        repo: String,
        /// zstd level for stored files (1-19).
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
        /// Store files uncompressed.
        #[arg(long)]
        no_compression: bool,
    },
    /// Back up a database — also while another process has it open (that
    /// process pins a consistent snapshot). Initializes an empty repository.
    Create {
        db: PathBuf,
        #[arg(long)]
        repo: String,
        /// Default: incremental if this database has a full backup, else full.
        #[arg(long = "type", value_enum)]
        kind: Option<BackupTypeArg>,
        /// Print the new backup's manifest summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List complete backups, oldest first.
    List {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        json: bool,
    },
    /// Show one backup (an id, or `latest`).
    Info {
        #[arg(long)]
        repo: String,
        #[arg(default_value = "latest")]
        id: String,
        /// The whole manifest as JSON, including every file.
        #[arg(long)]
        json: bool,
    },
    /// Check every object's size and SHA-256; with --deep also test-restore
    /// into a temporary directory, check every block and count the items.
    /// Exits 1 and lists the problems if any.
    Verify {
        #[arg(long)]
        repo: String,
        /// Backup id or `latest` (default: latest).
        id: Option<String>,
        /// Verify every backup.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        deep: bool,
    },
    /// Write a backup as a self-contained tar.gz (plus FILE.sha256) that
    /// `tar xzf` unpacks into an openable database directory.
    Export {
        #[arg(long)]
        repo: String,
        #[arg(default_value = "latest")]
        id: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["repo", "archive"])))]
pub struct RestoreArgs {
    /// Repository to restore from.
    #[arg(long)]
    pub repo: Option<String>,
    /// Backup id or `latest` (with --repo).
    #[arg(requires = "repo")]
    pub id: Option<String>,
    /// Restore from an archive made by `backup export` instead.
    #[arg(long, conflicts_with = "repo")]
    pub archive: Option<PathBuf>,
    /// Directory to restore into.
    #[arg(long)]
    pub target: PathBuf,
    /// Do not ask for confirmation when the target exists.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("condition").multiple(false)))]
pub struct QueryArgs {
    pub db: PathBuf,
    /// Partition key.
    pub pk: String,
    /// Sort key equals X.
    #[arg(long, group = "condition", value_name = "X")]
    pub sk_eq: Option<String>,
    /// Sort key less than X.
    #[arg(long, group = "condition", value_name = "X")]
    pub sk_lt: Option<String>,
    /// Sort key less than or equal to X.
    #[arg(long, group = "condition", value_name = "X")]
    pub sk_le: Option<String>,
    /// Sort key greater than X.
    #[arg(long, group = "condition", value_name = "X")]
    pub sk_gt: Option<String>,
    /// Sort key greater than or equal to X.
    #[arg(long, group = "condition", value_name = "X")]
    pub sk_ge: Option<String>,
    /// Sort key between A and B, both inclusive.
    #[arg(long, group = "condition", num_args = 2, value_names = ["A", "B"])]
    pub sk_between: Option<Vec<String>>,
    /// Sort key starts with P.
    #[arg(long, group = "condition", value_name = "P")]
    pub sk_begins_with: Option<String>,
    /// Descending sort-key order.
    #[arg(long)]
    pub reverse: bool,
    /// Return at most N items; if more exist, stderr says how to continue.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Continue after this key (JSON printed by a previous --limit run).
    #[arg(long, value_name = "KEY_JSON")]
    pub start_after: Option<String>,
    /// Print lossless typed lines (the export format).
    #[arg(long)]
    pub typed: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    pub db: PathBuf,
    /// Return at most N items; if more exist, stderr says how to continue.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// This worker's segment of a parallel scan (0-based).
    #[arg(long, requires = "total_segments", default_value_t = 0)]
    pub segment: usize,
    /// Number of segments of a parallel scan.
    #[arg(long, default_value_t = 1)]
    pub total_segments: usize,
    /// Continue after this key (JSON printed by a previous --limit run).
    #[arg(long, value_name = "KEY_JSON")]
    pub start_after: Option<String>,
    /// Print lossless typed lines (the export format).
    #[arg(long)]
    pub typed: bool,
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
