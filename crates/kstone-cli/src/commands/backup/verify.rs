//! `kstone backup verify`: check backups and the WAL archive.

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

/// Check every object's size and SHA-256; with --deep also test-restore
/// into a temporary directory, check every block and count the items.
/// Exits 1 and lists the problems if any.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Backup id or `latest` (default: latest).
    pub id: Option<String>,
    /// Verify every backup.
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
    /// Also test-restore into a temporary directory, check every block and
    /// count the items (an encrypted repository needs --identity).
    #[arg(long)]
    pub deep: bool,
    /// Format 2: read the contents of only this share of the packs (e.g.
    /// 5%), picked at random on each run, so that a large repository is
    /// covered over repeated runs at a fraction of the reads. Every chunk is
    /// still checked to be indexed and every pack to be present at its size.
    #[arg(long, value_name = "PERCENT", value_parser = percent, conflicts_with = "deep")]
    pub read_data_subset: Option<f64>,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// `5%` or `5` (0 < p ≤ 100) as a fraction.
fn percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage, e.g. 5%"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n / 100.0)
    } else {
        Err(format!("{s:?} is not between 0% (excluded) and 100%"))
    }
}

/// Run `kstone backup verify`.
pub fn run(a: &VerifyArgs) -> CliResult<Exit> {
    let VerifyArgs {
        repo,
        id,
        all,
        deep,
        read_data_subset,
        access,
    } = a;
    let fraction = read_data_subset.unwrap_or(1.0);
    let (all, deep) = (*all, *deep);
    let r = crate::access::open(repo, &access.open_options())?;
    let ids = if all {
        let ids = r.backup_ids()?;
        if ids.is_empty() {
            eprintln!("nothing to verify: {repo} has no backups, so nothing in it can be restored");
            return Ok(Exit::Failure);
        }
        ids
    } else {
        vec![r.resolve(id.as_deref().unwrap_or("latest"))?]
    };
    let mut problems = Vec::new();
    for id in &ids {
        let p = crate::progress::spin(&format!("verifying {id}"), || {
            r.verify_subset(id, deep, fraction)
        })?;
        if let Err(e) = r.record_verify(&p, deep) {
            eprintln!("warning: could not record the verification result: {e}");
        }
        if p.is_empty() {
            println!("ok        {id}");
        } else {
            println!("FAILED    {id}");
        }
        problems.extend(p);
    }
    if all {
        let p = crate::progress::spin("verifying the WAL archive", || r.verify_archive(deep))?;
        if p.is_empty() {
            println!("ok        WAL archive");
        } else {
            println!("FAILED    WAL archive");
            if let Err(e) = r.record_verify(&p, deep) {
                eprintln!("warning: could not record the verification result: {e}");
            }
        }
        problems.extend(p);
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        eprintln!(
            "{} problem(s) in {} backup(s) checked",
            problems.len(),
            ids.len()
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}
