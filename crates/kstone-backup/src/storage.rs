//! The one storage abstraction every repository operation goes through:
//! `object_store` (a local directory today, S3-compatible services through
//! the same code), wrapped in a small synchronous API with its own runtime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// Objects larger than this go up as multipart uploads of this part size.
pub const PART_SIZE: usize = 16 << 20;

/// How an object's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Zstd,
}

/// Bytes on their way to an object: plain, or through a zstd stream.
struct Encoded {
    enc: Option<zstd::stream::Encoder<'static, Vec<u8>>>,
    pending: Vec<u8>,
}

impl Encoded {
    fn new(codec: Codec, level: i32) -> std::io::Result<Encoded> {
        Ok(Encoded {
            enc: match codec {
                Codec::Zstd => Some(zstd::stream::Encoder::new(Vec::new(), level)?),
                Codec::None => None,
            },
            pending: Vec::new(),
        })
    }

    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.enc {
            Some(e) => {
                e.write_all(chunk)?;
                self.pending.append(e.get_mut());
            }
            None => self.pending.extend_from_slice(chunk),
        }
        Ok(())
    }

    /// Everything not yet taken from `pending`, with the stream's end.
    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        if let Some(e) = self.enc.take() {
            self.pending.extend(e.finish()?);
        }
        Ok(std::mem::take(&mut self.pending))
    }
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
}

/// What an upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub stored_size: u64,
    pub sha256: String,
    pub codec: Codec,
}

use kstone_core::fsio::hex;

impl Storage {
    /// Open a location: a local directory path (created if `create`).
    pub fn open(location: &str, create: bool) -> Result<Storage> {
        if location.contains("://") {
            return Err(Error::Invalid(format!(
                "unsupported repository location {location:?} (use a local directory path)"
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .ctx(&abs)?;
        Ok(Storage {
            rt,
            store: Arc::new(fs),
            local_root: Some(abs),
            location: location.to_string(),
        })
    }

    /// Use any `object_store` implementation (fault-injecting wrappers in
    /// tests, other backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, location: &str) -> Result<Storage> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .ctx(Path::new(location))?;
        Ok(Storage {
            rt,
            store,
            local_root: None,
            location: location.to_string(),
        })
    }

    fn err(&self, e: object_store::Error) -> Error {
        Error::Store {
            location: self.location.clone(),
            source: e,
        }
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let p = ObjPath::from(path);
        self.rt
            .block_on(self.store.put(&p, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.err(e))
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

    pub fn delete(&self, path: &str) -> Result<()> {
        let p = ObjPath::from(path);
        match self.rt.block_on(self.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Delete every object under `prefix`, including the invisible staging
    /// files that an upload killed half-way leaves in a local directory.
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
    /// zstd at `level` unless the data does not compress. A failed upload
    /// leaves no object behind.
    pub fn upload_file(
        &self,
        path: &str,
        file: &Path,
        len: u64,
        level: Option<i32>,
    ) -> Result<Uploaded> {
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
        let mut sink = Encoded::new(codec, level.unwrap_or(3)).map_err(io)?;
        sink.push(&first).map_err(io)?;
        let p = ObjPath::from(path);
        let mut buf = vec![0u8; 4 << 20];
        let mut stored = 0u64;
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
            self.put(path, bytes)?;
        } else {
            self.rt.block_on(async {
                let upload = self
                    .store
                    .put_multipart(&p)
                    .await
                    .map_err(|e| self.err(e))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                let result: Result<()> = async {
                    loop {
                        if sink.pending.len() >= PART_SIZE {
                            w.wait_for_capacity(4).await.map_err(|e| self.err(e))?;
                            stored += sink.pending.len() as u64;
                            w.write(&sink.pending);
                            sink.pending.clear();
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
        })
    }

    /// Stream an object through its codec into `out`; returns the decoded
    /// size and SHA-256.
    pub fn download(&self, path: &str, codec: Codec, out: &mut dyn Write) -> Result<(u64, String)> {
        let p = ObjPath::from(path);
        struct Tee<'a> {
            out: &'a mut dyn Write,
            hasher: Sha256,
            n: u64,
        }
        impl Write for Tee<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = self.out.write(b)?;
                self.hasher.update(&b[..n]);
                self.n += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.out.flush()
            }
        }
        let corrupt = |d: String| Error::Corrupt {
            object: path.to_string(),
            detail: d,
        };
        let mut tee = Tee {
            out,
            hasher: Sha256::new(),
            n: 0,
        };
        self.rt.block_on(async {
            let r = match self.store.get(&p).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(corrupt("object is missing".into()))
                }
                Err(e) => return Err(self.err(e)),
            };
            let mut s = r.into_stream();
            match codec {
                Codec::None => {
                    while let Some(c) = s.next().await {
                        let c = c.map_err(|e| self.err(e))?;
                        tee.write_all(&c).map_err(|e| corrupt(e.to_string()))?;
                    }
                }
                Codec::Zstd => {
                    let mut d = zstd::stream::write::Decoder::new(&mut tee)
                        .map_err(|e| corrupt(e.to_string()))?;
                    while let Some(c) = s.next().await {
                        let c = c.map_err(|e| self.err(e))?;
                        d.write_all(&c).map_err(|e| corrupt(format!("zstd: {e}")))?;
                    }
                    d.flush().map_err(|e| corrupt(format!("zstd: {e}")))?;
                }
            }
            Ok(())
        })?;
        let n = tee.n;
        Ok((n, hex(&tee.hasher.finalize())))
    }
}
