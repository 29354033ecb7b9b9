//! The transport every repository operation goes through: raw bytes by key
//! in an `object_store` (a local directory, `local.rs`, or an S3-compatible
//! bucket, `s3.rs`), wrapped in a small synchronous API with its own
//! runtime. It never looks inside an object: compression, encryption and
//! hashing of object bodies are [`crate::objects`]'s.

mod batch;
mod local;
mod s3;

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::error::{Error, IoContext, Result};

pub use batch::Batch;
pub use s3::{install_tls_provider, S3Settings};

/// Objects larger than this go up as multipart uploads of at least this
/// part size (S3's minimum is 5 MiB). With 2 parts in flight per upload and
/// 4 uploads at once, a backup buffers at most 64 MiB.
pub const PART_SIZE: usize = 8 << 20;

/// Part size for an upload of `len` bytes: at least `PART_SIZE`, and large
/// enough that even an incompressible, encrypted file needs fewer than
/// 9,000 of S3's 10,000 parts.
pub fn part_size_for(len: u64) -> usize {
    let worst = len + len / 1024 + (1 << 20);
    let need = worst.div_ceil(9_000).div_ceil(1 << 20) << 20;
    (need as usize).max(PART_SIZE)
}

/// The first pause before a failed listing is started over; it doubles up
/// to [`LIST_RETRY_MAX_PAUSE`].
const LIST_RETRY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const LIST_RETRY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `e` is a failure in transport (an [`HttpError`] in its chain:
/// a connection refused, cut or timed out), not an answer of the store
/// such as a refused credential or a missing bucket.
///
/// [`HttpError`]: object_store::client::HttpError
fn in_transport(e: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<object_store::client::HttpError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A repository location and a client for it.
pub struct Storage {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its path (to remove what interrupted uploads
    /// leave, which the object listing does not show).
    local_root: Option<PathBuf>,
    /// The location as the user wrote it (for messages).
    pub location: String,
    /// Attributes of every new object (the S3 storage class).
    attributes: Attributes,
    /// How often and how long a failed listing is retried (the S3 retry
    /// settings).
    retry: object_store::RetryConfig,
}

fn runtime(location: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ctx(Path::new(location))
}

impl Storage {
    /// Open a location: `s3://bucket[/prefix]`, or a local directory path
    /// (created if `create`).
    pub fn open(location: &str, create: bool) -> Result<Storage> {
        Storage::open_with(location, create, &S3Settings::from_env())
    }

    /// [`Storage::open`] with explicit S3 settings.
    pub fn open_with(location: &str, create: bool, s3: &S3Settings) -> Result<Storage> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (store, attributes) = s3::open(location, rest, s3)?;
            return Ok(Storage {
                rt: runtime(location)?,
                store,
                local_root: None,
                location: location.to_string(),
                attributes,
                retry: s3::retry(),
            });
        }
        if location.contains("://") {
            return Err(Error::Invalid(format!(
                "unsupported repository location {location:?} (use a directory path or s3://bucket/prefix)"
            )));
        }
        if s3.storage_class.is_some() || s3.sse.is_some() {
            return Err(Error::Invalid(format!(
                "--s3-storage-class and --s3-sse apply to s3:// repositories, not to {location}"
            )));
        }
        let (store, root) = local::open(location, create)?;
        Ok(Storage {
            rt: runtime(location)?,
            store,
            local_root: Some(root),
            location: location.to_string(),
            attributes: Attributes::new(),
            retry: s3::retry(),
        })
    }

    /// Use any `object_store` implementation (fault-injecting wrappers in
    /// tests, other backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, location: &str) -> Result<Storage> {
        Ok(Storage {
            rt: runtime(location)?,
            store,
            local_root: None,
            location: location.to_string(),
            attributes: Attributes::new(),
            retry: s3::retry(),
        })
    }

    fn err(&self, e: object_store::Error) -> Error {
        Error::Store {
            location: self.location.clone(),
            source: e,
        }
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        }
    }

    /// Store `bytes` at `path` as they are. A repository stores objects
    /// through [`crate::objects::Objects::put`], which decides whether they
    /// are sealed; this is the raw transport beneath it.
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.check_root()?;
        let p = ObjPath::from(path);
        self.rt
            .block_on(
                self.store
                    .put_opts(&p, PutPayload::from(bytes), self.put_options()),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The whole object as stored, or `None` if it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let p = ObjPath::from(path);
        self.rt.block_on(async {
            match self.store.get(&p).await {
                // `Vec::from` takes the buffer over when nothing else holds
                // it: no second copy of a 32 MiB pack.
                Ok(r) => Ok(Some(Vec::from(r.bytes().await.map_err(|e| self.err(e))?))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    /// Object size, or `None` if absent.
    pub fn head(&self, path: &str) -> Result<Option<u64>> {
        let p = ObjPath::from(path);
        match self.rt.block_on(self.store.head(&p)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every object under `prefix` with its size.
    ///
    /// A listing that fails in transport (a response cut off part-way
    /// through its body, which `object_store` does not retry for lists) is
    /// started over, with backoff, as often and for as long as the S3 retry
    /// settings allow a request to be retried: a listing is either whole or
    /// an error.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let p = ObjPath::from(prefix);
        let start = std::time::Instant::now();
        let (mut pause, mut retries) = (LIST_RETRY_FIRST_PAUSE, 0);
        loop {
            match self.rt.block_on(self.list_once(&p)) {
                Err(e)
                    if in_transport(&e)
                        && retries < self.retry.max_retries
                        && start.elapsed() + pause < self.retry.retry_timeout =>
                {
                    retries += 1;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(LIST_RETRY_MAX_PAUSE);
                }
                Err(e) => return Err(self.err(e)),
                Ok(mut out) => {
                    out.sort();
                    return Ok(out);
                }
            }
        }
    }

    async fn list_once(&self, p: &ObjPath) -> object_store::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut s = self.store.list(Some(p));
        while let Some(m) = s.next().await {
            match m {
                Ok(m) => out.push((m.location.to_string(), m.size)),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A batch of objects made durable together by [`Storage::publish`]
    /// (`storage/batch.rs`); `None` for other stores than a local
    /// directory, whose objects are durable one by one.
    pub(crate) fn batch(&self) -> Option<Batch> {
        self.local_root.as_deref().map(Batch::new)
    }

    /// [`Storage::put`], but in a local directory the object stays
    /// invisible and not yet durable until `batch` is published.
    pub(crate) fn put_in(&self, batch: Option<&Batch>, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.check_root()?;
        match batch {
            Some(b) if b.stage(path, &bytes)? => Ok(()),
            _ => self.put(path, bytes),
        }
    }

    /// Make every object of `batch` durable and visible.
    pub(crate) fn publish(&self, batch: Option<Batch>) -> Result<()> {
        self.check_root()?;
        batch.map_or(Ok(()), Batch::publish)
    }

    /// Refuse to write into a local repository whose directory is gone
    /// ([`local::check_root`]); other stores have nothing to check.
    pub(crate) fn check_root(&self) -> Result<()> {
        match &self.local_root {
            Some(root) => local::check_root(root, &self.location),
            None => Ok(()),
        }
    }

    /// The directory of a local repository.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// Delete one object; a missing one is not an error.
    pub fn delete(&self, path: &str) -> Result<()> {
        let p = ObjPath::from(path);
        match self.rt.block_on(self.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Delete every object under `prefix`, including the invisible staging
    /// files that an upload killed half-way leaves in a local directory.
    /// (On S3 such a killed upload leaves an incomplete multipart upload,
    /// invisible and removed by the bucket's lifecycle rule: `docs/offsite.md`.)
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for (obj, _) in self.list(prefix)? {
            self.delete(&obj)?;
        }
        if let Some(root) = &self.local_root {
            local::remove_staging(root, prefix)?;
        }
        Ok(())
    }

    /// Begin a multipart upload to `path` in parts of `part` bytes.
    pub(crate) fn start_upload(&self, path: &str, part: usize) -> Result<Upload<'_>> {
        let p = ObjPath::from(path);
        let opts = PutMultipartOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        let w = self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart_opts(&p, opts)
                .await
                .map_err(|e| self.err(e))?;
            Ok::<_, Error>(WriteMultipart::new_with_chunk_size(upload, part))
        })?;
        Ok(Upload { storage: self, w })
    }

    /// The byte stream of a data object; a missing one is damage to the
    /// backup that lists it, not a storage failure.
    fn stream_of(
        &self,
        path: &str,
    ) -> Result<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>> {
        match self.rt.block_on(self.store.get(&ObjPath::from(path))) {
            Ok(r) => Ok(r.into_stream()),
            Err(object_store::Error::NotFound { .. }) => Err(Error::Corrupt {
                object: path.to_string(),
                detail: "object is missing".into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Hand each chunk of a data object's stored bytes to `each`, in order
    /// (a missing object is [`Error::Corrupt`]).
    pub(crate) fn for_each_chunk(&self, path: &str, mut each: impl FnMut(&[u8])) -> Result<()> {
        let mut s = self.stream_of(path)?;
        while let Some(c) = self.rt.block_on(s.next()) {
            each(&c.map_err(|e| self.err(e))?);
        }
        Ok(())
    }

    /// A synchronous reader of a data object's stored bytes (a missing
    /// object is [`Error::Corrupt`]).
    pub(crate) fn reader(&self, path: &str) -> Result<ObjectReader<'_>> {
        Ok(ObjectReader {
            storage: self,
            stream: self.stream_of(path)?,
            cur: bytes::Bytes::new(),
            failure: ReadFailure {
                storage: self,
                cell: Rc::new(RefCell::new(None)),
            },
        })
    }
}

/// A multipart upload under way. Dropping it neither completes nor aborts
/// it: call [`Upload::finish`] or [`Upload::abort`].
pub(crate) struct Upload<'a> {
    storage: &'a Storage,
    w: WriteMultipart,
}

impl Upload<'_> {
    /// Send `chunk`, first waiting until fewer than 2 parts of this upload
    /// are in flight (what bounds a backup's memory: [`PART_SIZE`]).
    pub(crate) fn send(&mut self, chunk: &[u8]) -> Result<()> {
        let s = self.storage;
        let w = &mut self.w;
        s.rt.block_on(async {
            w.wait_for_capacity(2).await.map_err(|e| s.err(e))?;
            // Inside the runtime: writing spawns the part's upload task.
            w.write(chunk);
            Ok(())
        })
    }

    /// Send the last bytes and complete the upload: only now does the
    /// object exist.
    pub(crate) fn finish(self, last: &[u8]) -> Result<()> {
        let s = self.storage;
        let mut w = self.w;
        s.rt.block_on(async {
            w.write(last);
            w.finish().await.map(|_| ()).map_err(|e| s.err(e))
        })
    }

    /// Give the upload up, so that it leaves no object behind.
    pub(crate) fn abort(self) {
        let _ = self.storage.rt.block_on(self.w.abort());
    }
}

/// The storage error behind a failed read of an [`ObjectReader`] (the
/// `Read` trait can only carry an `io::Error`), so that a caller can tell a
/// failing store from a damaged object.
#[derive(Clone)]
pub(crate) struct ReadFailure<'a> {
    storage: &'a Storage,
    cell: Rc<RefCell<Option<object_store::Error>>>,
}

impl ReadFailure<'_> {
    /// The storage error that made a read fail, if one did (once).
    pub(crate) fn take(&self) -> Option<Error> {
        let e = self.cell.borrow_mut().take()?;
        Some(self.storage.err(e))
    }
}

/// A synchronous reader over an object's byte stream, so that decoders that
/// want `Read` (age, zstd) can stream large objects without holding them.
pub(crate) struct ObjectReader<'a> {
    storage: &'a Storage,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    failure: ReadFailure<'a>,
}

impl<'a> ObjectReader<'a> {
    /// Where this reader leaves the storage error behind a failed read.
    pub(crate) fn failure(&self) -> ReadFailure<'a> {
        self.failure.clone()
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.storage.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    *self.failure.cell.borrow_mut() = Some(e);
                    return Err(std::io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_under_the_part_limit() {
        for len in [0u64, 1, 16 << 20, 100 << 30, 5 << 40] {
            let p = part_size_for(len) as u64;
            assert!(p >= PART_SIZE as u64);
            assert!((len + len / 1024 + (1 << 20)).div_ceil(p) <= 9_000, "{len}");
        }
    }
}
