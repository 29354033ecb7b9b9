//! `kstone scan`: every item, or one segment of a parallel scan.

use std::path::PathBuf;

use kstone_core::Scan;

use crate::exit::Exit;
use crate::paging::{count_within, positive, print_page, start_after};
use crate::CliResult;

/// Every item of the database (or one segment of a parallel scan); one
/// JSON object per line.
#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    /// Database directory.
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

/// `--total-segments`: 1 to 1,000,000, as DynamoDB's TotalSegments.
fn segments(s: &str) -> Result<usize, String> {
    count_within(s, 1, 1_000_000, "must be between 1 and 1000000")
}

/// Run `kstone scan`.
pub fn run(a: &ScanArgs) -> CliResult<Exit> {
    let db = super::open_for_reading(&a.db)?;
    let schema = *db.key_schema();
    let page = start_after(&schema, &a.start_after).and_then(|start| {
        Ok(db.scan(&Scan {
            limit: a.limit,
            segment: a.segment,
            total_segments: a.total_segments,
            exclusive_start: start,
        })?)
    });
    db.close()?;
    print_page(&schema, &page?, a.typed)
}
