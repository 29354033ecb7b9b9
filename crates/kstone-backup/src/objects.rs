//! A repository's objects by key, as their owners see them: the body
//! sealing on top of the [`Storage`] transport — zstd compression, age
//! encryption with the repository's data key ([`crate::crypto`]) and
//! SHA-256 hashing. Which objects are encrypted is decided in one place,
//! by what the object is ([`layout::kind`]), so no caller can store user
//! data in plaintext in an encrypted repository by picking a method.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use kstone_core::fsio::hex;
use sha2::{Digest, Sha256};

use crate::crypto::Keys;
use crate::error::{Error, IoContext, Result};
use crate::layout;
use crate::storage::{part_size_for, Batch, Storage, PART_SIZE};

/// Bytes of a file's start compressed to decide whether it compresses.
pub(crate) const SAMPLE: usize = 32 << 10;

/// Whether data that starts with `sample` (up to [`SAMPLE`] bytes) is worth
/// compressing at `level`: zstd saves a tenth or more of it. One rule for
/// whole-file objects (format 1) and a file's chunks (format 2).
pub(crate) fn compresses(sample: &[u8], level: i32) -> std::io::Result<bool> {
    let sample = &sample[..sample.len().min(SAMPLE)];
    if sample.is_empty() {
        return Ok(false);
    }
    Ok(zstd::bulk::compress(sample, level)?.len() * 10 < sample.len() * 9)
}

/// How an object's bytes are encoded (before encryption, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Stored as they are.
    None,
    /// A zstd frame.
    Zstd,
}

/// What an upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// Bytes of the object as stored (compressed, encrypted).
    pub stored_size: u64,
    /// SHA-256 of the file's own bytes.
    pub sha256: String,
    /// How the bytes were encoded before any encryption.
    pub codec: Codec,
    /// SHA-256 of the object as stored (what `verify` checks without a key).
    pub stored_sha256: String,
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

/// A repository's objects: the transport plus, in an encrypted repository,
/// the data key every [`layout::Kind::Data`] object is sealed with.
pub struct Objects {
    storage: Storage,
    /// Set when the repository is encrypted: data objects are sealed.
    keys: Option<Arc<Keys>>,
}

impl Objects {
    /// The objects of an unencrypted repository.
    pub fn plain(storage: Storage) -> Objects {
        Objects {
            storage,
            keys: None,
        }
    }

    /// The objects of an encrypted repository: data objects are sealed to
    /// `keys` (and opened, if the keys can).
    pub fn sealed(storage: Storage, keys: Keys) -> Objects {
        Objects {
            storage,
            keys: Some(Arc::new(keys)),
        }
    }

    /// The one rule: the key to seal (and open) the object at `key` with —
    /// the repository's data key for user data in an encrypted repository,
    /// nothing otherwise.
    fn sealer(&self, key: &str) -> Option<&Keys> {
        if layout::kind(key).sealed() {
            self.keys.as_deref()
        } else {
            None
        }
    }

    /// The repository's keys, if it is encrypted.
    pub(crate) fn keys(&self) -> Option<&Keys> {
        self.keys.as_deref()
    }

    /// The transport beneath, which stores bytes as they are given.
    pub fn raw(&self) -> &Storage {
        &self.storage
    }

    /// The location as the user wrote it.
    pub fn location(&self) -> &str {
        &self.storage.location
    }

    /// The directory of a local repository.
    pub fn local_root(&self) -> Option<&Path> {
        self.storage.local_root()
    }

    /// A batch for [`Objects::upload_file_in`] (`None`: the store makes
    /// each object durable by itself).
    pub(crate) fn batch(&self) -> Option<Batch> {
        self.storage.batch()
    }

    /// Make a batch's objects durable and visible.
    pub(crate) fn publish(&self, batch: Option<Batch>) -> Result<()> {
        self.storage.publish(batch)
    }

    /// Store an object: sealed if it is user data in an encrypted
    /// repository ([`layout::kind`]), as it is otherwise.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        match self.sealer(key) {
            Some(k) => self.storage.put(key, k.seal(&bytes)?),
            None => self.storage.put(key, bytes),
        }
    }

    /// [`Objects::put`], returning the size and SHA-256 of the object as
    /// stored (what `verify` checks without the identity).
    pub fn put_digest(&self, key: &str, bytes: Vec<u8>) -> Result<(u64, [u8; 32])> {
        let bytes = match self.sealer(key) {
            Some(k) => k.seal(&bytes)?,
            None => bytes,
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let n = bytes.len() as u64;
        self.storage.put(key, bytes)?;
        Ok((n, digest))
    }

    /// A whole object (opened if it is sealed), or `None` if it does not
    /// exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match (self.storage.get(key)?, self.sealer(key)) {
            (Some(b), Some(k)) => Ok(Some(k.open(&b, key)?)),
            (b, _) => Ok(b),
        }
    }

    /// The content of the object at `key` from its bytes as stored (opened,
    /// if objects of its kind are sealed).
    pub fn open_stored(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        match self.sealer(key) {
            Some(k) => k.open(&stored, key),
            None => Ok(stored),
        }
    }

    /// Object size as stored, or `None` if absent.
    pub fn head(&self, key: &str) -> Result<Option<u64>> {
        self.storage.head(key)
    }

    /// Every object under `prefix` with its stored size.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.storage.list(prefix)
    }

    /// Delete one object; a missing one is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.storage.delete(key)
    }

    /// Delete every object under `prefix` ([`Storage::delete_prefix`]).
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.storage.delete_prefix(prefix)
    }

    /// Upload the first `len` bytes of `file` to `path`, compressing with
    /// zstd at `level` unless the data does not compress, and sealing it if
    /// it is user data in an encrypted repository. A failed upload leaves
    /// no object behind.
    pub fn upload_file(
        &self,
        path: &str,
        file: &Path,
        len: u64,
        level: Option<i32>,
    ) -> Result<Uploaded> {
        self.upload_file_in(None, path, file, len, level)
    }

    /// [`Objects::upload_file`] into `batch`: an object small enough to go
    /// up in one piece becomes visible and durable when the batch is
    /// published ([`Objects::publish`]).
    pub(crate) fn upload_file_in(
        &self,
        batch: Option<&Batch>,
        path: &str,
        file: &Path,
        len: u64,
        level: Option<i32>,
    ) -> Result<Uploaded> {
        self.storage.check_root()?;
        let mut f = std::fs::File::open(file).ctx(file)?.take(len);
        let mut first = vec![0u8; (len as usize).min(1 << 20)];
        f.read_exact(&mut first).ctx(file)?;
        let codec = match level {
            // A sample decides: compressing the whole first MiB only to
            // throw it away cost more than the rest of a small backup (SSTs
            // of compressed blocks do not compress).
            Some(l) if compresses(&first, l).ctx(file)? => Codec::Zstd,
            _ => Codec::None,
        };
        let mut hasher = Sha256::new();
        hasher.update(&first);
        let io = |e: std::io::Error| Error::Io {
            path: file.to_path_buf(),
            source: e,
        };
        // Stored as read (no codec, no sealing): one digest serves both.
        let verbatim = codec == Codec::None && self.sealer(path).is_none();
        let mut sink = Encoder::new(codec, level.unwrap_or(3), self.sealer(path))?;
        sink.push(&first).map_err(io)?;
        // Small files were read whole: no 4 MiB buffer to zero for them.
        let rest = (len - first.len() as u64).min(4 << 20) as usize;
        drop(first);
        let mut buf = vec![0u8; rest];
        let mut stored = 0u64;
        let mut stored_hasher = Sha256::new();
        let part = part_size_for(len);
        if len as usize <= PART_SIZE {
            while !buf.is_empty() {
                let n = f.read(&mut buf).ctx(file)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                sink.push(&buf[..n]).map_err(io)?;
            }
            let bytes = sink.finish().map_err(io)?;
            stored = bytes.len() as u64;
            if !verbatim {
                stored_hasher.update(&bytes);
            }
            // The bytes are sealed already: straight to the transport.
            self.storage.put_in(batch, path, bytes)?;
        } else {
            let mut upload = self.storage.start_upload(path, part)?;
            let result = (|| -> Result<Vec<u8>> {
                loop {
                    if sink.pending_len() >= part {
                        let chunk = sink.take();
                        stored += chunk.len() as u64;
                        if !verbatim {
                            stored_hasher.update(&chunk);
                        }
                        upload.send(&chunk)?;
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
                if !verbatim {
                    stored_hasher.update(&rest);
                }
                Ok(rest)
            })();
            match result {
                Ok(rest) => upload.finish(&rest)?,
                Err(e) => {
                    upload.abort();
                    return Err(e);
                }
            }
        }
        let sha256 = hex(&hasher.finalize());
        Ok(Uploaded {
            stored_size: stored,
            stored_sha256: if verbatim {
                sha256.clone()
            } else {
                hex(&stored_hasher.finalize())
            },
            sha256,
            codec,
        })
    }

    /// Size and SHA-256 of an object's stored bytes, as they are.
    pub fn stored_digest(&self, path: &str) -> Result<(u64, String)> {
        let mut h = Sha256::new();
        let mut n = 0u64;
        self.storage.for_each_chunk(path, |c| {
            n += c.len() as u64;
            h.update(c);
        })?;
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
        let raw = self.storage.reader(path)?;
        let failure = raw.failure();
        let mut reader: Box<dyn Read + '_> = match self.sealer(path) {
            Some(k) => Box::new(
                k.open_reader(raw, path)
                    .map_err(|e| failure.take().unwrap_or(e))?,
            ),
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
            if let Some(f) = failure.take() {
                return Err(f);
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
        let s = Objects::plain(Storage::open(t.path().to_str().unwrap(), true).unwrap());
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

    const AGE_HEADER: &[u8] = b"age-encryption.org/v1";

    fn encrypted(dir: &Path) -> Objects {
        let (_, recipient) = crate::crypto::generate_identity();
        let (keys, _, _) = Keys::create(&[recipient]).unwrap();
        Objects::sealed(Storage::open(dir.to_str().unwrap(), true).unwrap(), keys)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Whatever method stores it, user data in an encrypted repository is
    /// sealed: the transport never receives its plaintext.
    #[test]
    fn data_objects_cannot_be_stored_unsealed_in_an_encrypted_repository() {
        let t = tempfile::tempdir().unwrap();
        let objs = encrypted(t.path());
        let plain = b"user data that must never reach the repository in the clear".repeat(50);
        let data_keys = [
            layout::data_file("20261127T1Z-ab", "sst/000001.sst"),
            layout::data_file("20261127T1Z-ab", "wal/00000001.log"),
            format!(
                "{}/00000000000000000001-00000000000000000002-0000000000000001-0000000000000002.walarc",
                layout::archive_of("db", "h")
            ),
            // A key nobody classified: sealed too.
            "somewhere/new".to_string(),
        ];
        for key in &data_keys {
            assert!(layout::kind(key).sealed(), "{key}");
            objs.put(key, plain.clone()).unwrap();
            let stored = objs.raw().get(key).unwrap().unwrap();
            assert!(stored.starts_with(AGE_HEADER), "{key}");
            assert!(!contains(&stored, &plain[..40]), "{key}");
            assert_eq!(objs.get(key).unwrap().unwrap(), plain, "{key}");
            // Streamed (multipart for large files) through the same rule.
            let f = t.path().join("file");
            std::fs::write(&f, &plain).unwrap();
            let up = objs.upload_file(key, &f, plain.len() as u64, None).unwrap();
            let stored = objs.raw().get(key).unwrap().unwrap();
            assert!(stored.starts_with(AGE_HEADER), "{key}");
            assert!(!contains(&stored, &plain[..40]), "{key}");
            assert_eq!(objs.stored_digest(key).unwrap().1, up.stored_sha256);
            let mut back = Vec::new();
            objs.download(key, up.codec, &mut back).unwrap();
            assert_eq!(back, plain);
        }
        // Metadata stays readable without an identity, byte for byte.
        for key in [
            layout::CONFIG.to_string(),
            layout::manifest("x"),
            layout::lineage("d", "h"),
        ] {
            objs.put(&key, plain.clone()).unwrap();
            assert_eq!(objs.raw().get(&key).unwrap().unwrap(), plain, "{key}");
        }
    }

    /// Without the identity, data can still be sealed but not opened.
    #[test]
    fn a_repository_opened_without_identity_still_seals() {
        let t = tempfile::tempdir().unwrap();
        let (_, recipient) = crate::crypto::generate_identity();
        let (_, cfg, wrapped) = Keys::create(&[recipient]).unwrap();
        let keys = Keys::load(&cfg, &wrapped, None).unwrap();
        assert!(!keys.can_open());
        let objs = Objects::sealed(
            Storage::open(t.path().to_str().unwrap(), true).unwrap(),
            keys,
        );
        let key = layout::data_file("i", "sst/a.sst");
        objs.put(&key, b"secret".to_vec()).unwrap();
        let stored = objs.raw().get(&key).unwrap().unwrap();
        assert!(stored.starts_with(AGE_HEADER));
        assert!(matches!(objs.get(&key), Err(Error::CannotDecrypt(_))));
    }
}
