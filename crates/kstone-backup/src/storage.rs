//! The one storage abstraction every repository operation goes through:
//! `object_store` (a local directory today, S3-compatible services through
//! the same code), wrapped in a small synchronous API with its own runtime.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, BackoffConfig, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};

use crate::crypto::Keys;
use crate::error::{Error, IoContext, Result};

/// Objects larger than this go up as multipart uploads of at least this
/// part size (S3's minimum is 5 MiB). With 2 parts in flight per upload and
/// 4 uploads at once, a backup buffers at most 64 MiB.
pub const PART_SIZE: usize = 8 << 20;

/// How an object's bytes are encoded (before encryption, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Zstd,
}

/// The bytes an encoder has produced and not yet sent. Shared because the
/// encoder stack owns its innermost writer.
#[derive(Clone, Default)]
struct Pending(Rc<RefCell<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Inner layer of an upload: age encryption or nothing.
enum Seal {
    Plain(Pending),
    Age(age::stream::StreamWriter<Pending>),
}

impl Write for Seal {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Seal::Plain(p) => p.write(b),
            Seal::Age(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Seal::Plain(p) => p.flush(),
            Seal::Age(w) => w.flush(),
        }
    }
}

impl Seal {
    fn finish(self) -> std::io::Result<()> {
        match self {
            Seal::Plain(_) => Ok(()),
            Seal::Age(w) => w.finish().map(|_| ()),
        }
    }
}

/// Bytes on their way to an object: through zstd (optionally), then age
/// (in an encrypted repository), into `pending`.
struct Encoder {
    stack: Option<EncoderStack>,
    pending: Pending,
}

enum EncoderStack {
    Plain(Seal),
    Zstd(zstd::stream::Encoder<'static, Seal>),
}

impl Encoder {
    fn new(codec: Codec, level: i32, keys: Option<&Keys>) -> Result<Encoder> {
        let pending = Pending::default();
        let seal = match keys {
            Some(k) => Seal::Age(k.seal_writer(pending.clone())?),
            None => Seal::Plain(pending.clone()),
        };
        let stack = match codec {
            Codec::Zstd => EncoderStack::Zstd(
                zstd::stream::Encoder::new(seal, level)
                    .map_err(|e| Error::Invalid(format!("zstd: {e}")))?,
            ),
            Codec::None => EncoderStack::Plain(seal),
        };
        Ok(Encoder {
            stack: Some(stack),
            pending,
        })
    }

    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.stack {
            Some(EncoderStack::Plain(s)) => s.write_all(chunk),
            Some(EncoderStack::Zstd(z)) => z.write_all(chunk),
            None => Err(std::io::Error::other("encoder already finished")),
        }
    }

    fn pending_len(&self) -> usize {
        self.pending.0.borrow().len()
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.pending.0.borrow_mut())
    }

    /// Close every layer; everything not yet taken.
    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self.stack.take() {
            Some(EncoderStack::Plain(s)) => s.finish()?,
            Some(EncoderStack::Zstd(z)) => z.finish()?.finish()?,
            None => {}
        }
        Ok(self.take())
    }
}

/// A synchronous reader over an object's byte stream, so that decoders that
/// want `Read` (age, zstd) can stream large objects without holding them.
struct ObjectReader<'a> {
    rt: &'a tokio::runtime::Runtime,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    /// The storage error behind a failed read (the `Read` trait can only
    /// carry an `io::Error`).
    failure: Rc<RefCell<Option<object_store::Error>>>,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    *self.failure.borrow_mut() = Some(e);
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

/// S3 settings that are not in the standard AWS environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `x-amz-storage-class` of new objects (e.g. `STANDARD_IA`).
    pub storage_class: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// KMS key for `aws:kms` (default: the bucket's / account's key).
    pub sse_kms_key_id: Option<String>,
}

impl S3Settings {
    /// From `KSTONE_S3_STORAGE_CLASS`, `KSTONE_S3_SSE`, `KSTONE_S3_SSE_KMS_KEY_ID`.
    pub fn from_env() -> S3Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Settings {
            storage_class: var("KSTONE_S3_STORAGE_CLASS"),
            sse: var("KSTONE_S3_SSE"),
            sse_kms_key_id: var("KSTONE_S3_SSE_KMS_KEY_ID"),
        }
    }
}

/// Retries of one S3 request: transient errors (5xx, timeouts, refused
/// connections) are retried with exponential backoff for at most this long.
fn s3_retry() -> RetryConfig {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: num("KSTONE_S3_MAX_RETRIES").unwrap_or(10) as usize,
        retry_timeout: Duration::from_secs(num("KSTONE_S3_RETRY_TIMEOUT_SECS").unwrap_or(120)),
    }
}

/// Part size for an upload of `len` bytes: at least `PART_SIZE`, and large
/// enough that even an incompressible, encrypted file needs fewer than
/// 9,000 of S3's 10,000 parts.
pub fn part_size_for(len: u64) -> usize {
    let worst = len + len / 1024 + (1 << 20);
    let need = worst.div_ceil(9_000).div_ceil(1 << 20) << 20;
    (need as usize).max(PART_SIZE)
}

fn s3_key(name: &str) -> Result<AmazonS3ConfigKey> {
    name.parse()
        .map_err(|e| Error::Invalid(format!("S3 option {name}: {e}")))
}

/// Whether an endpoint may be used, and whether it needs plain HTTP (only
/// ever for loopback: elsewhere credentials and data would cross the
/// network unprotected).
fn check_endpoint(ep: &str) -> Result<bool> {
    let invalid = |m: String| Error::Invalid(m);
    let (scheme, host) =
        url_host(ep).ok_or_else(|| invalid(format!("AWS_ENDPOINT_URL {ep:?} is not a URL")))?;
    match scheme {
        "https" => Ok(false),
        "http" if is_loopback_host(host) => Ok(true),
        "http" => Err(invalid(format!(
            "refusing plain HTTP to {host}: use https:// (plain HTTP is allowed only for loopback endpoints)"
        ))),
        _ => Err(invalid(format!("AWS_ENDPOINT_URL {ep:?} is not http(s)"))),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The host of an `http(s)://host[:port][/…]` URL.
fn url_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| &h[1..])?
    } else {
        authority.split(':').next()?
    };
    Some((scheme, host))
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
    /// Set when the repository is encrypted: data objects are sealed.
    keys: Option<Arc<Keys>>,
}

/// What an upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub stored_size: u64,
    pub sha256: String,
    pub codec: Codec,
    pub stored_sha256: String,
}

use kstone_core::fsio::hex;

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
            return Storage::open_s3(location, rest, s3);
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
        let path = PathBuf::from(location);
        if create {
            std::fs::create_dir_all(&path).ctx(&path)?;
        } else if !path.is_dir() {
            return Err(Error::NotARepository(location.to_string()));
        }
        let abs = std::fs::canonicalize(&path).ctx(&path)?;
        let fs = LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| Error::Store {
                location: location.into(),
                source: e,
            })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Storage {
            rt: runtime(location)?,
            store: Arc::new(fs),
            local_root: Some(abs),
            location: location.to_string(),
            attributes: Attributes::new(),
            keys: None,
        })
    }

    /// An S3 (or S3-compatible) bucket; endpoint, region and credentials
    /// come from the standard AWS environment variables.
    fn open_s3(location: &str, rest: &str, s3: &S3Settings) -> Result<Storage> {
        install_tls_provider();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(Error::Invalid(format!(
                "{location:?} names no bucket (use s3://bucket/prefix)"
            )));
        }
        let invalid = |m: String| Error::Invalid(m);
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(s3_retry());
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let mut allow_http = false;
        if let Some(ep) = &endpoint {
            allow_http = check_endpoint(ep)?;
            b = b.with_endpoint(ep.as_str());
            // Custom endpoints (MinIO, Ceph, Garage, moto…) want path-style
            // requests unless told otherwise.
            if std::env::var("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_err() {
                b = b.with_virtual_hosted_style_request(false);
            }
        }
        b = b.with_allow_http(allow_http);
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        match s3.sse.as_deref() {
            None => {}
            Some(v @ ("AES256" | "aws:kms")) => {
                b = b.with_config(s3_key("aws_server_side_encryption")?, v);
                if let Some(k) = &s3.sse_kms_key_id {
                    b = b.with_config(s3_key("aws_sse_kms_key_id")?, k.as_str());
                }
            }
            Some(v) => return Err(invalid(format!("--s3-sse {v:?}: use AES256 or aws:kms"))),
        }
        if s3.sse_kms_key_id.is_some() && s3.sse.as_deref() != Some("aws:kms") {
            return Err(invalid("--s3-sse-kms-key-id needs --s3-sse aws:kms".into()));
        }
        let mut attributes = Attributes::new();
        if let Some(c) = &s3.storage_class {
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(invalid(format!(
                    "--s3-storage-class {c:?} is not an S3 storage class (e.g. STANDARD_IA)"
                )));
            }
            attributes.insert(Attribute::StorageClass, c.clone().into());
        }
        let store = b.build().map_err(|e| Error::Store {
            location: location.into(),
            source: e,
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Storage {
            rt: runtime(location)?,
            store,
            local_root: None,
            location: location.to_string(),
            attributes,
            keys: None,
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
            keys: None,
        })
    }

    /// From now on, seal data objects (and open them, if the keys can).
    pub(crate) fn set_keys(&mut self, keys: Keys) {
        self.keys = Some(Arc::new(keys));
    }

    pub(crate) fn keys(&self) -> Option<&Keys> {
        self.keys.as_deref()
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

    /// Store a metadata object (never encrypted: config, manifests, locks).
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

    /// Store a data object: sealed in an encrypted repository.
    pub fn put_data(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.keys {
            Some(k) => self.put(path, k.seal(&bytes)?),
            None => self.put(path, bytes),
        }
    }

    /// The whole object, or `None` if it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let p = ObjPath::from(path);
        self.rt.block_on(async {
            match self.store.get(&p).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(|e| self.err(e))?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    /// A whole data object, opened in an encrypted repository.
    pub fn get_data(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match (self.get(path)?, &self.keys) {
            (Some(b), Some(k)) => Ok(Some(k.open(&b, path)?)),
            (b, _) => Ok(b),
        }
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
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let p = ObjPath::from(prefix);
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&p));
            while let Some(m) = s.next().await {
                match m {
                    Ok(m) => out.push((m.location.to_string(), m.size)),
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(self.err(e)),
                }
            }
            out.sort();
            Ok(out)
        })
    }

    /// A local repository's directory must still be there: the file store
    /// would create it again (with only the new object in it) under a
    /// writer that has not noticed the repository is gone.
    fn check_root(&self) -> Result<()> {
        match &self.local_root {
            Some(root) if !root.is_dir() => Err(Error::RepositoryGone {
                location: self.location.clone(),
                why: "its directory is gone (an unmounted disk, a moved directory?)".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The directory of a local repository.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

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
            let dir = root.join(prefix);
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).ctx(&dir),
                _ => {}
            }
        }
        Ok(())
    }

    /// Upload the first `len` bytes of `file` to `path`, compressing with
    /// zstd at `level` unless the data does not compress, and sealing it in
    /// an encrypted repository. A failed upload leaves no object behind.
    pub fn upload_file(
        &self,
        path: &str,
        file: &Path,
        len: u64,
        level: Option<i32>,
    ) -> Result<Uploaded> {
        self.check_root()?;
        let mut f = std::fs::File::open(file).ctx(file)?.take(len);
        let mut first = vec![0u8; (len as usize).min(1 << 20)];
        f.read_exact(&mut first).ctx(file)?;
        let codec = match level {
            Some(l) if !first.is_empty() => {
                let c = zstd::bulk::compress(&first, l).map_err(|e| Error::Io {
                    path: file.to_path_buf(),
                    source: e,
                })?;
                if c.len() * 10 < first.len() * 9 {
                    Codec::Zstd
                } else {
                    Codec::None
                }
            }
            _ => Codec::None,
        };
        let mut hasher = Sha256::new();
        hasher.update(&first);
        let io = |e: std::io::Error| Error::Io {
            path: file.to_path_buf(),
            source: e,
        };
        let mut sink = Encoder::new(codec, level.unwrap_or(3), self.keys.as_deref())?;
        sink.push(&first).map_err(io)?;
        drop(first);
        let p = ObjPath::from(path);
        let mut buf = vec![0u8; 4 << 20];
        let mut stored = 0u64;
        let mut stored_hasher = Sha256::new();
        let part = part_size_for(len);
        if len as usize <= PART_SIZE {
            loop {
                let n = f.read(&mut buf).ctx(file)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                sink.push(&buf[..n]).map_err(io)?;
            }
            let bytes = sink.finish().map_err(io)?;
            stored = bytes.len() as u64;
            stored_hasher.update(&bytes);
            self.put(path, bytes)?;
        } else {
            self.rt.block_on(async {
                let opts = PutMultipartOptions {
                    attributes: self.attributes.clone(),
                    ..Default::default()
                };
                let upload = self
                    .store
                    .put_multipart_opts(&p, opts)
                    .await
                    .map_err(|e| self.err(e))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, part);
                let result: Result<()> = async {
                    loop {
                        if sink.pending_len() >= part {
                            w.wait_for_capacity(2).await.map_err(|e| self.err(e))?;
                            let chunk = sink.take();
                            stored += chunk.len() as u64;
                            stored_hasher.update(&chunk);
                            w.write(&chunk);
                        }
                        let n = f.read(&mut buf).ctx(file)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        sink.push(&buf[..n]).map_err(io)?;
                    }
                    let rest = sink.finish().map_err(io)?;
                    stored += rest.len() as u64;
                    stored_hasher.update(&rest);
                    w.write(&rest);
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => w.finish().await.map(|_| ()).map_err(|e| self.err(e)),
                    Err(e) => {
                        let _ = w.abort().await;
                        Err(e)
                    }
                }
            })?;
        }
        Ok(Uploaded {
            stored_size: stored,
            sha256: hex(&hasher.finalize()),
            codec,
            stored_sha256: hex(&stored_hasher.finalize()),
        })
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

    /// Size and SHA-256 of an object's stored bytes, as they are.
    pub fn stored_digest(&self, path: &str) -> Result<(u64, String)> {
        let mut s = self.stream_of(path)?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(c) = self.rt.block_on(s.next()) {
            let c = c.map_err(|e| self.err(e))?;
            n += c.len() as u64;
            h.update(&c);
        }
        Ok((n, hex(&h.finalize())))
    }

    /// Stream an object through its codec (and decryption) into `out`;
    /// returns the decoded size and SHA-256.
    pub fn download(&self, path: &str, codec: Codec, out: &mut dyn Write) -> Result<(u64, String)> {
        struct Tee<'a> {
            out: &'a mut dyn Write,
            hasher: Sha256,
            n: u64,
            /// A failure of the destination (a full disk), which is not
            /// damage to the object.
            out_failed: bool,
        }
        impl Write for Tee<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = self.out.write(b).inspect_err(|_| self.out_failed = true)?;
                self.hasher.update(&b[..n]);
                self.n += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.out.flush().inspect_err(|_| self.out_failed = true)
            }
        }
        let corrupt = |d: String| Error::Corrupt {
            object: path.to_string(),
            detail: d,
        };
        let failure = Rc::new(RefCell::new(None));
        let raw = ObjectReader {
            rt: &self.rt,
            stream: self.stream_of(path)?,
            cur: bytes::Bytes::new(),
            failure: failure.clone(),
        };
        let mut reader: Box<dyn Read + '_> = match &self.keys {
            Some(k) => {
                Box::new(k.open_reader(raw, path).map_err(
                    |e| match failure.borrow_mut().take() {
                        Some(f) => self.err(f),
                        None => e,
                    },
                )?)
            }
            None => Box::new(raw),
        };
        if codec == Codec::Zstd {
            reader = Box::new(
                zstd::stream::read::Decoder::new(reader)
                    .map_err(|e| corrupt(format!("zstd: {e}")))?,
            );
        }
        let mut tee = Tee {
            out,
            hasher: Sha256::new(),
            n: 0,
            out_failed: false,
        };
        if let Err(e) = std::io::copy(&mut reader, &mut tee) {
            if let Some(f) = failure.borrow_mut().take() {
                return Err(self.err(f));
            }
            if tee.out_failed {
                // The caller names the file it was writing.
                return Err(Error::Io {
                    path: PathBuf::new(),
                    source: e,
                });
            }
            return Err(corrupt(e.to_string()));
        }
        let n = tee.n;
        Ok((n, hex(&tee.hasher.finalize())))
    }
}

/// rustls needs one process-wide crypto provider; ring avoids aws-lc's C
/// build. Installing twice is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_destination_is_not_a_corrupt_object() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let t = tempfile::tempdir().unwrap();
        let s = Storage::open(t.path().to_str().unwrap(), true).unwrap();
        s.put("obj", vec![7u8; 10_000]).unwrap();
        match s.download("obj", Codec::None, &mut Full) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
            other => panic!("{other:?}"),
        }
        // Damage still reads as damage.
        s.put("z", b"not zstd".to_vec()).unwrap();
        assert!(matches!(
            s.download("z", Codec::Zstd, &mut std::io::sink()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn part_sizes_stay_under_the_part_limit() {
        for len in [0u64, 1, 16 << 20, 100 << 30, 5 << 40] {
            let p = part_size_for(len) as u64;
            assert!(p >= PART_SIZE as u64);
            assert!((len + len / 1024 + (1 << 20)).div_ceil(p) <= 9_000, "{len}");
        }
    }

    #[test]
    fn loopback_detection() {
        assert_eq!(
            url_host("http://127.0.0.1:9000"),
            Some(("http", "127.0.0.1"))
        );
        assert_eq!(url_host("http://[::1]:9000/x"), Some(("http", "::1")));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("::1"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("s3.example.com"));
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused() {
        let e = check_endpoint("http://10.1.2.3:9000").err().unwrap();
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        assert!(check_endpoint("http://127.0.0.1:9000").unwrap());
        assert!(!check_endpoint("https://s3.example.com").unwrap());
        assert!(check_endpoint("ftp://x").is_err());
    }
}
