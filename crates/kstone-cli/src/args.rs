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
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How repositories are reached and unlocked (every command that uses one).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AccessArgs {
    /// Identity file that unlocks an encrypted repository: an age identity
    /// file or an OpenSSH private key (ed25519/RSA; a protected one is
    /// unlocked with KSTONE_SSH_PASSPHRASE). Needed to restore, verify
    /// --deep, export and PITR; not to back up.
    #[arg(long, global = true, env = "KSTONE_IDENTITY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// S3 storage class of new objects, e.g. STANDARD_IA (s3:// repositories).
    #[arg(
        long,
        global = true,
        env = "KSTONE_S3_STORAGE_CLASS",
        value_name = "CLASS"
    )]
    pub s3_storage_class: Option<String>,
    /// S3 server-side encryption of new objects: AES256 or aws:kms.
    #[arg(long, global = true, env = "KSTONE_S3_SSE", value_name = "MODE")]
    pub s3_sse: Option<String>,
    /// KMS key id for --s3-sse aws:kms (default: the bucket's key).
    #[arg(
        long,
        global = true,
        env = "KSTONE_S3_SSE_KMS_KEY_ID",
        value_name = "ID"
    )]
    pub s3_sse_kms_key_id: Option<String>,
}

/// The keys `kstone bench` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchKeys {
    Bytes,
    Typed,
}

/// A key type: S (string), N (number), B (binary, given as base64).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTypeArg {
    #[value(name = "S", alias = "s")]
    S,
    #[value(name = "N", alias = "n")]
    N,
    #[value(name = "B", alias = "b")]
    B,
}

impl From<KeyTypeArg> for kstone_core::KeyType {
    fn from(t: KeyTypeArg) -> Self {
        match t {
            KeyTypeArg::S => kstone_core::KeyType::S,
            KeyTypeArg::N => kstone_core::KeyType::N,
            KeyTypeArg::B => kstone_core::KeyType::B,
        }
    }
}

/// An item's key on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Partition key (a number for N, base64 for B).
    #[arg(allow_hyphen_values = true)]
    pub pk: String,
    /// Sort key (a number for N, base64 for B; `--sk=-5` or `--sk -5`).
    #[arg(long, allow_hyphen_values = true)]
    pub sk: Option<String>,
    /// Type of the partition key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub pk_type: Option<KeyTypeArg>,
    /// Type of the sort key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE", requires = "sk")]
    pub sk_type: Option<KeyTypeArg>,
}

/// A count within `lo..=hi`.
fn count_within(s: &str, lo: usize, hi: usize, why: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(_) => Err(why.into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--limit`: at least 1, as DynamoDB's Limit.
fn positive(s: &str) -> Result<usize, String> {
    count_within(s, 1, usize::MAX, "must be at least 1")
}

/// `--total-segments`: 1 to 1,000,000, as DynamoDB's TotalSegments.
fn segments(s: &str) -> Result<usize, String> {
    count_within(s, 1, 1_000_000, "must be between 1 and 1000000")
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// See KeystoneDB in a minute: build a sample shop database, back it up
    /// (full + incremental) with WAL archiving on, simulate an accident and
    /// restore to the moment before it. Leaves everything in --dir.
    Demo {
        /// Where to put the demo (must not exist or be empty).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Number of orders in the sample database.
        #[arg(long, default_value_t = 200_000)]
        items: u64,
    },
    /// Create a new, empty database directory, optionally declaring its key
    /// schema as a DynamoDB table does (enforced on every write).
    ///
    /// Keys are typed S (string), N (number) or B (binary): N sort keys order
    /// numerically. Without --pk-type/--sk-type/--no-sk any key type is
    /// accepted and items may have a sort key or not.
    #[command(
        after_help = "Examples:\n  kstone create orders.keystone --pk-type S --sk-type N\n  \
kstone create users.keystone --pk-type S --no-sk"
    )]
    Create {
        /// Database directory (by convention `NAME.keystone`).
        db: PathBuf,
        /// Type of every partition key.
        #[arg(long, value_enum, value_name = "TYPE")]
        pk_type: Option<KeyTypeArg>,
        /// Every item has a sort key of this type.
        #[arg(long, value_enum, value_name = "TYPE", conflicts_with = "no_sk")]
        sk_type: Option<KeyTypeArg>,
        /// Items have no sort key.
        #[arg(long)]
        no_sk: bool,
    },
    /// Store an item (replacing any item with the same key).
    ///
    /// Plain JSON cannot say B or sets: use --typed for those.
    Put {
        db: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// The item as a JSON object (plain JSON, or DynamoDB JSON with --typed).
        json: String,
        /// Parse JSON as DynamoDB-typed JSON: {"a": {"S": "x"}, "n": {"N": "1"}}.
        #[arg(long)]
        typed: bool,
    },
    /// Print an item as JSON; exits 1 with "not found" if absent.
    ///
    /// Plain JSON (the default) is lossy: B values print as base64 text and
    /// sets as lists, so putting it back changes their types. --typed prints
    /// DynamoDB JSON, which round-trips.
    Get {
        db: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Print DynamoDB-typed JSON (lossless) instead of plain JSON.
        #[arg(long)]
        typed: bool,
    },
    /// Delete an item (succeeds even if it did not exist).
    Delete {
        db: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Show sizes, file counts and the last LSN of a database.
    Stats {
        db: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Full integrity check: every checksum, MANIFEST ↔ files, key order and
    /// stripe ownership in SSTs, WAL chains and LSN order. Exits 1 and lists
    /// the problems if any. Works while another process has the database open.
    Check {
        db: PathBuf,
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
    /// number and nothing imported (unless --skip-invalid).
    Import {
        db: PathBuf,
        /// Input file, or - for standard input.
        input: String,
        /// Import the lines this database accepts and list the others on
        /// stderr (`line N: why; skipped`) instead of importing nothing:
        /// for moving a database whose items an older version accepted
        /// (e.g. an empty sort key) into a typed one.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Backups: create, list, inspect, verify and export them.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Restore a backup (or an exported archive) into a directory. The target
    /// is built beside the destination, verified, then swapped in; an existing
    /// database there is moved to DIR.before-restore-TIME, never deleted.
    Restore(RestoreArgs),
    /// Ship a database's WAL into a repository continuously (or once), so it
    /// can be restored to any point in time. Works beside the application
    /// that has the database open.
    WalArchive {
        db: PathBuf,
        #[arg(long)]
        repo: String,
        /// Time between rounds, e.g. 1s, 500ms, 2m (at least 10ms).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Run one round and exit. (A location with nothing in it is made a
        /// new, unencrypted repository: run `backup init --recipient` first
        /// for an encrypted one.)
        #[arg(long)]
        once: bool,
        /// Report to the repository at least this often that archiving is
        /// alive (`backup status` calls an archiver silent for three of
        /// these periods and 10 s stalled). Default: a minute; never shorter
        /// than --interval.
        #[arg(long, value_parser = parse_heartbeat, conflicts_with = "once")]
        heartbeat: Option<std::time::Duration>,
        /// Stop archiving the database to this repository: the database no
        /// longer keeps WAL for it (its archive ends here; archiving to it
        /// again needs a new backup first). `kstone stats` lists every
        /// repository a database is archived to.
        #[arg(long, conflicts_with = "once")]
        unregister: bool,
    },
    /// Run backups, WAL archiving, prune and verification on cron schedules
    /// from a config file, with Prometheus metrics; stops cleanly on SIGTERM.
    /// See docs/operations.md for the config format.
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Record a named restore point in the WAL (`restore --to-name NAME`).
    RestorePoint { db: PathBuf, name: String },
    /// List the copies restores moved aside from DB (DB.before-restore-TIME,
    /// never deleted by a restore), or delete the old ones.
    #[command(
        after_help = "Example:\n  kstone restore-copies /var/lib/keystonedb/app.keystone --drop-older-than 30d --dry-run"
    )]
    RestoreCopies {
        db: PathBuf,
        /// Delete the copies moved aside longer ago than this (e.g. 30d);
        /// a copy a process has open is kept.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        drop_older_than: Option<std::time::Duration>,
        /// Say what would be deleted, delete nothing.
        #[arg(long, requires = "drop_older_than")]
        dry_run: bool,
    },
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
    /// Create a backup repository at an empty location: a directory or
    /// s3://bucket/prefix (endpoint, region and credentials from the AWS_*
    /// environment variables). With --recipient it is encrypted: every data
    /// object is sealed with age before it leaves this machine.
    Init {
        /// Repository location: a directory, or s3://bucket/prefix.
        #[arg(long)]
        repo: String,
        /// zstd level for stored files (1-19); data that does not compress
        /// is stored as is.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        compression_level: i32,
        /// Store files uncompressed.
        #[arg(long, conflicts_with = "compression_level")]
        no_compression: bool,
        /// Encrypt to this recipient: an age key (age1…) or an SSH public key
        /// ("ssh-ed25519 AAAA…" or "ssh-rsa AAAA…", quoted); repeat for
        /// several.
        #[arg(long, value_name = "PUBLIC_KEY", value_parser = recipient_arg)]
        recipient: Vec<String>,
        /// Encrypt to every recipient in this file (one per line: age1…,
        /// ssh-ed25519 … or ssh-rsa …; an authorized_keys file works).
        #[arg(long, value_name = "FILE")]
        recipients_file: Option<PathBuf>,
        /// Rewrite the lost `config` object of an existing repository from
        /// the copy its backup manifests carry (id, compression, encryption);
        /// no other option applies. Without it, init only ever creates a
        /// repository at an empty location.
        #[arg(long, conflicts_with_all = ["recipient", "recipients_file", "no_compression"])]
        repair: bool,
    },
    /// Change who can unlock an encrypted repository: re-wraps its data key
    /// (one small object, whatever the repository's size). Needs --identity
    /// of a current recipient.
    Rekey {
        #[arg(long)]
        repo: String,
        /// age1…, ssh-ed25519 … or ssh-rsa …; repeat for several.
        #[arg(long, value_name = "PUBLIC_KEY", value_parser = recipient_arg)]
        add_recipient: Vec<String>,
        #[arg(long, value_name = "PUBLIC_KEY")]
        remove_recipient: Vec<String>,
    },
    /// Write a new age identity file (mode 0600) and print its public key,
    /// for `backup init --recipient` (same format as age-keygen).
    Keygen {
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Back up a database — also while another process has it open (that
    /// process pins a consistent snapshot). Initializes an empty (unencrypted)
    /// repository; an encrypted one needs only its public key, never --identity.
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
        /// Write an incremental or differential even when nothing changed
        /// since the backup it builds on (by default it is skipped, saying so,
        /// with exit 0).
        #[arg(long)]
        allow_empty: bool,
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
    /// Backups, the recoverable window (earliest and latest reachable point),
    /// how far the WAL archive trails the database's last write (0 when
    /// caught up, also while the database is idle) and the archiver's last
    /// report. Exits 1, saying why, when something needs an operator: a
    /// damaged backup, a hole in the archive, a failed verification, an
    /// archiver that reports failure or stopped reporting, or a limit given
    /// by --max-age / --max-archive-lag — for cron and monitoring.
    Status {
        #[arg(long)]
        repo: String,
        /// e.g. 26h: the newest backup must be younger than this.
        #[arg(long, value_parser = parse_duration)]
        max_age: Option<std::time::Duration>,
        /// e.g. 60s: the archive must trail the database's last write by no
        /// more than this at the archiver's last report, and an archiver must
        /// be reporting (a continuous one at least every few periods, a
        /// one-off `wal-archive --once` within this time).
        #[arg(long, value_parser = parse_duration)]
        max_archive_lag: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Delete backups and archived WAL that no rule keeps. A backup that a kept
    /// backup depends on is always kept, and so is the WAL kept backups need.
    /// With no rule given, nothing is deleted. Try --dry-run first.
    Prune(PruneArgs),
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
pub struct PruneArgs {
    #[arg(long)]
    pub repo: String,
    /// Keep the N newest backups (per database).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the last N weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep every backup younger than this (e.g. 7d, 36h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub keep_within: Option<std::time::Duration>,
    /// Keep full backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_full_days: Option<u64>,
    /// Keep differential backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_differential_days: Option<u64>,
    /// Keep incremental backups younger than N days.
    #[arg(long, value_name = "N")]
    pub keep_incremental_days: Option<u64>,
    /// Keep every point of this last period restorable (backup + archived WAL).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub pitr_window: Option<std::time::Duration>,
    /// Allow a policy that deletes every backup of a database (and the
    /// archived WAL that needed them), e.g. --keep-last 0; without it such a
    /// prune is refused and deletes nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["repo", "archive"])))]
pub struct RestoreArgs {
    /// Repository to restore from.
    #[arg(long)]
    pub repo: Option<String>,
    /// Backup id or `latest` (with --repo).
    #[arg(requires = "repo", conflicts_with_all = ["to_time", "to_lsn", "to_name", "to_latest"])]
    pub id: Option<String>,
    /// Point-in-time restore: every write committed at or before this time
    /// (RFC 3339, e.g. 2026-11-27T19:41:26Z or 2026-11-27T19:41:26.5+01:00, or @UNIX_SECONDS).
    #[arg(long, requires = "repo", group = "pitr", value_parser = parse_time)]
    pub to_time: Option<u64>,
    /// Point-in-time restore: every write with LSN ≤ N. A restore exits 0
    /// only with exactly the point asked for; a point the repository cannot
    /// reach exactly (a gap, a pruned archive) exits 1 naming the latest
    /// reachable one (`backup status` lists them).
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_lsn: Option<u64>,
    /// Point-in-time restore: up to the named restore point.
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_name: Option<String>,
    /// Point-in-time restore: the latest point the repository can restore
    /// exactly (the newest backup plus every archived write that continues
    /// it without a gap).
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_latest: bool,
    /// Database history to restore from (default: that of the newest backup).
    #[arg(long, requires = "repo")]
    pub history: Option<String>,
    /// Restore from an archive made by `backup export` instead (`-`: read
    /// it from standard input, e.g. `gpg -d app.tar.gz.gpg | kstone restore --archive - …`).
    #[arg(long, conflicts_with = "repo")]
    pub archive: Option<PathBuf>,
    /// Directory to restore into.
    #[arg(long)]
    pub target: PathBuf,
    /// Do not ask for confirmation when the target exists.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Owner of the restored database: USER, USER:GROUP or :GROUP (names or
    /// ids). Default: the owner of the database it replaces, if any.
    #[arg(long, value_name = "USER[:GROUP]", value_parser = crate::ownership::owner_arg)]
    pub owner: Option<String>,
    /// Mode of the restored database's directories (octal, e.g. 700); files
    /// get it without execute bits. Default: the mode of the database it
    /// replaces, if any.
    #[arg(long, value_name = "OCTAL", value_parser = crate::ownership::mode_arg)]
    pub mode: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("condition").multiple(false)))]
pub struct QueryArgs {
    pub db: PathBuf,
    /// Partition key.
    #[arg(allow_hyphen_values = true)]
    pub pk: String,
    /// Type of the partition key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub pk_type: Option<KeyTypeArg>,
    /// Type of the sort-key values below (default: the type declared at
    /// create, else S). A condition matches sort keys of its type only.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub sk_type: Option<KeyTypeArg>,
    /// Sort key equals X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_eq: Option<String>,
    /// Sort key less than X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_lt: Option<String>,
    /// Sort key less than or equal to X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_le: Option<String>,
    /// Sort key greater than X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_gt: Option<String>,
    /// Sort key greater than or equal to X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_ge: Option<String>,
    /// Sort key between A and B, both inclusive (`--sk-between -5 5` works).
    #[arg(long, group = "condition", num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
    pub sk_between: Option<Vec<String>>,
    /// Sort key starts with P (S and B sort keys).
    #[arg(
        long,
        group = "condition",
        value_name = "P",
        allow_hyphen_values = true
    )]
    pub sk_begins_with: Option<String>,
    /// Descending sort-key order.
    #[arg(long)]
    pub reverse: bool,
    /// Return at most N items (N ≥ 1); if more exist, stderr says how to
    /// continue. Unlike DynamoDB, no continuation is printed when the page
    /// ends exactly at the last item.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub limit: Option<usize>,
    /// Continue after this key (JSON printed by a previous --limit run).
    #[arg(long, value_name = "KEY_JSON")]
    pub start_after: Option<String>,
    /// Print lossless typed lines (the export format). The default plain
    /// lines show B values as base64 text and sets as lists.
    #[arg(long)]
    pub typed: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    pub db: PathBuf,
    /// Return at most N items (N ≥ 1); if more exist, stderr says how to
    /// continue (not when the page ends exactly at the last item).
    #[arg(long, value_name = "N", value_parser = positive)]
    pub limit: Option<usize>,
    /// This worker's segment of a parallel scan (0-based).
    #[arg(long, requires = "total_segments", default_value_t = 0)]
    pub segment: usize,
    /// Number of segments of a parallel scan (1 to 1000000).
    #[arg(long, default_value_t = 1, value_parser = segments)]
    pub total_segments: usize,
    /// Continue after this key (JSON printed by a previous --limit run).
    #[arg(long, value_name = "KEY_JSON")]
    pub start_after: Option<String>,
    /// Print lossless typed lines (the export format). The default plain
    /// lines show B values as base64 text and sets as lists.
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
}

/// An age to delete by: a duration with its unit (`30d`, `12h`); a bare
/// number is refused, since `30` meant as days would delete everything.
pub fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    if s.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("give a unit: {s}d for days, {s}h for hours"));
    }
    parse_duration(s)
}

/// `1s`, `250ms`, `2m`, `1h`, `3d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A duration between repeated rounds: at least 10 ms (0 would spin a CPU).
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_millis(10) {
        return Err(format!(
            "interval {s:?} is too short: rounds would spin a CPU (use at least 10ms, e.g. 1s)"
        ));
    }
    Ok(d)
}

/// An archiver's heartbeat period: at least a second (each report is a
/// write to the repository).
pub fn parse_heartbeat(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("heartbeat {s:?} is too short: use at least 1s"));
    }
    Ok(d)
}

/// RFC 3339 (`2026-11-27T19:41:26.123Z`, `…+01:00`) or `@unix-seconds` → µs since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("bad time {s:?}: use RFC 3339 (2026-11-27T19:41:26Z) or @UNIX_SECONDS");
    if let Some(rest) = s.strip_prefix('@') {
        let secs: f64 = rest.parse().map_err(|_| bad())?;
        if !(0.0..1e11).contains(&secs) {
            return Err(bad());
        }
        return Ok((secs * 1e6).round() as u64);
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r).and_then(|x| x.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return Err(bad());
        }
        let mut us = String::from(digits);
        us.truncate(6);
        while us.len() < 6 {
            us.push('0');
        }
        frac_us = us.parse().map_err(|_| bad())?;
    }
    let offset_secs = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let hh: i64 = tz[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = tz[4..6].parse().map_err(|_| bad())?;
            let v = hh * 3600 + mm * 60;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    // days from civil (proleptic Gregorian)
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    if t < 0 {
        return Err(bad());
    }
    Ok(t as u64 * 1_000_000 + frac_us as u64)
}

/// A recipient given on the command line, checked as it is read (a bad key
/// is a usage error).
fn recipient_arg(s: &str) -> Result<String, String> {
    kstone_backup::crypto::parse_recipient(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2026-11-27T19:09:06Z"),
            Ok(1_795_806_546_000_000)
        );
        assert_eq!(
            parse_time("2026-11-27T20:09:06.5+01:00"),
            Ok(1_795_806_546_500_000)
        );
        assert_eq!(parse_time("@1795806546"), Ok(1_795_806_546_000_000));
        for bad in [
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-27",
            "@x",
            "2026-11-27T19:09:06",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(std::time::Duration::from_secs(1)));
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert!(parse_duration("1y").is_err());
    }
}
