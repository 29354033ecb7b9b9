//! Client-side encryption of repository data with age.
//!
//! An encrypted repository has its own X25519 *data key*. Data objects
//! (backed-up files and archived WAL) are age-encrypted to the data key's
//! public half, which sits in the plaintext `config`: writing backups needs no
//! secret. The data key's secret half is stored in `keys/data-key`,
//! age-encrypted to the operators' recipients; reading data (restore,
//! `verify --deep`, export, PITR) needs one of their identities. `rekey`
//! re-wraps only that small object. Layout: `docs/formats.md`.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the wrapped data key lives.
pub const KEY_OBJECT: &str = crate::layout::DATA_KEY;
pub const KEY_MAGIC: &[u8; 8] = b"KSTNBKKY";
/// The only scheme so far: age, X25519 recipients, STREAM payload.
pub const SCHEME: &str = "age-x25519";

/// The `encryption` section of an encrypted repository's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionConfig {
    pub scheme: String,
    /// Public half of the data key: every data object is encrypted to it.
    pub data_recipient: String,
}

/// The `keys/data-key` object: the data key's secret half, encrypted to the
/// operators' recipients. The recipient list is kept beside it (public keys
/// only) so that `rekey` can add and remove without guessing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    pub recipients: Vec<String>,
    /// base64 of the age file holding the data key's `AGE-SECRET-KEY-1…`.
    pub wrapped: String,
    pub updated_at_us: u64,
}

/// An operator's public key, to which the data key is wrapped.
pub type Recipient = Box<dyn age::Recipient + Send + Sync>;

/// Parse one operator recipient: an age X25519 key (`age1…`) or an SSH
/// public key (`ssh-ed25519 …` or `ssh-rsa …`, as in `~/.ssh/id_*.pub` or
/// `authorized_keys`; a trailing comment is allowed).
pub fn parse_recipient(s: &str) -> Result<Recipient> {
    let s = key_of_line(s);
    if is_ssh_key(s) {
        use age::ssh::ParseRecipientKeyError as E;
        return match age::ssh::Recipient::from_str(s) {
            Ok(age::ssh::Recipient::SshEd25519(_, point))
                if point.is_small_order() || weak(point.to_montgomery()) =>
            {
                Err(weak_key(s))
            }
            Ok(age::ssh::Recipient::SshRsa(_, key)) if weak_rsa(&key) => Err(Error::Invalid(
                format!(
                    "{:?} is not a usable RSA key: its modulus is prime, a power or has a small factor, so its private key follows from the public one",
                    short(s)
                ),
            )),
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(Error::Invalid(format!(
                "{:?} is not a usable SSH recipient: {}",
                short(s),
                match e {
                    E::RsaModulusTooSmall => "RSA keys under 2048 bits are too weak".into(),
                    E::RsaModulusTooLarge => "the RSA key is larger than supported".into(),
                    E::Unsupported(t) if t == "ssh-rsa" => {
                        "this RSA key cannot be used (an unusable exponent?)".into()
                    }
                    E::Unsupported(t) =>
                        format!("{t} keys are not supported (use ssh-ed25519 or ssh-rsa)"),
                    E::Ignore | E::Invalid(_) => "not an ssh-ed25519 or ssh-rsa public key".into(),
                }
            ))),
        };
    }
    let r = parse_data_recipient(s)?;
    match x25519_point(s) {
        Some(p) if !weak(p) => Ok(Box::new(r)),
        _ => Err(weak_key(s)),
    }
}

/// The key of an `authorized_keys`-style line: options before the key type
/// (`command="…",no-pty ssh-ed25519 AAAA… comment`) and a byte-order mark
/// are skipped.
fn key_of_line(s: &str) -> &str {
    let s = s.trim().trim_start_matches('\u{feff}');
    if s.starts_with("age1") || is_ssh_key(s) {
        return s;
    }
    // Options end at the first blank outside double quotes (which may hold
    // blanks and `\"`); the key follows. An unterminated quote leaves the
    // line as it is, which then fails as no key.
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                let rest = s[i..].trim_start();
                return if is_ssh_key(rest) { rest } else { s };
            }
            _ => {}
        }
    }
    s
}

/// The Montgomery u-coordinate of an `age1…` key.
fn x25519_point(s: &str) -> Option<curve25519_dalek::MontgomeryPoint> {
    let (_, data, _) = bech32::decode(s).ok()?;
    let bytes: Vec<u8> = bech32::FromBase32::from_base32(&data).ok()?;
    Some(curve25519_dalek::MontgomeryPoint(bytes.try_into().ok()?))
}

/// A point whose Diffie-Hellman result is the same whatever the secret
/// (small order): wrapping a key to it hides nothing.
fn weak(p: curve25519_dalek::MontgomeryPoint) -> bool {
    // Clamped scalars are multiples of 8: a point of order dividing 8 goes
    // to the identity (u = 0) under any of them.
    p.mul_clamped([0x5a; 32]).to_bytes() == [0u8; 32]
}

/// An RSA key whose private key follows from its modulus: a prime (d is
/// e⁻¹ mod n − 1), a perfect power (p², p³…), or one with a small factor.
fn weak_rsa(key: &rsa::RsaPublicKey) -> bool {
    use num_bigint_dig::BigUint;
    use rsa::traits::PublicKeyParts;
    let n = key.n();
    if num_bigint_dig::prime::probably_prime(n, 20) {
        return true;
    }
    let zero = BigUint::from(0u32);
    // Trial division by the primes below 2^16 (a sieve: 6,542 of them).
    let mut composite = vec![false; 1 << 16];
    for p in 2..composite.len() {
        if composite[p] {
            continue;
        }
        if n % BigUint::from(p as u32) == zero {
            return true;
        }
        for m in (p * p..composite.len()).step_by(p) {
            composite[m] = true;
        }
    }
    (2..=16u32).any(|k| {
        let r = n.nth_root(k);
        let mut x = BigUint::from(1u32);
        for _ in 0..k {
            x = &x * &r;
        }
        x == *n
    })
}

fn weak_key(s: &str) -> Error {
    Error::Invalid(format!(
        "{:?} is not a usable public key: it is a point of small order, to which \
         anything encrypted can be read without any private key",
        short(s)
    ))
}

/// A recipient as the repository lists it: an SSH key without its comment,
/// so that `rekey --remove-recipient` matches however the key was quoted.
pub fn canonical_recipient(s: &str) -> Result<String> {
    let s = key_of_line(s);
    if is_ssh_key(s) {
        parse_recipient(s)?;
        if let Ok(r) = age::ssh::Recipient::from_str(s) {
            return Ok(r.to_string());
        }
    }
    parse_recipient(s)?;
    Ok(s.to_string())
}

/// An OpenSSH public key line (any key type, so that unusable ones are
/// named as such rather than as bad age keys).
fn is_ssh_key(s: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| s.starts_with(p))
}

/// The data key's public half: always age X25519.
fn parse_data_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|e| {
        Error::Invalid(format!(
            "{:?} is not a recipient: expected age1… (age X25519), ssh-ed25519 … or ssh-rsa …: {e}",
            short(s.trim())
        ))
    })
}

/// A key quoted in an error, cut short: keys are long and the start names them.
fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Recipients from a file: one recipient per line (`age1…`, `ssh-ed25519 …`
/// or `ssh-rsa …`); `#` comments and blank lines ignored (the format of age's
/// `-R` files, so an `authorized_keys` file of such keys works too).
pub fn read_recipients_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim().trim_start_matches('\u{feff}');
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        parse_recipient(l).map_err(|e| {
            let why = match e {
                Error::Invalid(m) => m,
                other => other.to_string(),
            };
            Error::Invalid(format!("{} line {}: {why}", path.display(), i + 1))
        })?;
        v.push(key_of_line(l).to_string());
    }
    Ok(v)
}

/// The identities of an identity file: an age identity file
/// (`AGE-SECRET-KEY-1…` lines) or an OpenSSH private key (ed25519 or RSA).
/// A passphrase-protected SSH key is unlocked with the passphrase in
/// `KSTONE_SSH_PASSPHRASE`: kstone often runs unattended and never prompts.
pub struct Identities {
    ids: Vec<Box<dyn age::Identity>>,
    pub source: String,
}

impl Identities {
    pub fn from_file(path: &Path) -> Result<Identities> {
        let source = path.display().to_string();
        let head = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if head.starts_with(b"-----BEGIN") {
            return Self::from_ssh(&head, source);
        }
        let file = age::IdentityFile::from_file(source.clone())
            .map_err(|e| Error::Invalid(format!("cannot read identity file {source}: {e}")))?;
        let ids = file
            .into_identities()
            .map_err(|e| Error::Invalid(format!("identity file {source} is not usable: {e}")))?;
        if ids.is_empty() {
            return Err(Error::Invalid(format!(
                "identity file {source} holds no age identity"
            )));
        }
        Ok(Identities { ids, source })
    }

    fn from_ssh(pem: &[u8], source: String) -> Result<Identities> {
        let bad = |d: String| Error::Invalid(format!("SSH identity {source}: {d}"));
        if pem.starts_with(b"-----BEGIN PRIVATE KEY-----")
            || pem.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        {
            return Err(bad(
                "is a PKCS#8 key; age reads keys in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`): \
                 export it in that format (for RSA, `ssh-keygen -p -f COPY` converts a copy)"
                    .into(),
            ));
        }
        let id = age::ssh::Identity::from_buffer(pem, Some(source.clone()))
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        let key = match id {
            age::ssh::Identity::Unencrypted(k) => k,
            age::ssh::Identity::Unsupported(k) => {
                use age::ssh::UnsupportedKey as U;
                return Err(bad(match k {
                    U::EncryptedPem | U::EncryptedSsh(_) => {
                        "is encrypted in a way age cannot read; re-save it with `ssh-keygen -p -o`"
                            .into()
                    }
                    U::Hardware(t) => {
                        format!("{t} lives on a hardware key and cannot decrypt files")
                    }
                    U::Type(t) => format!(
                        "{t} keys are not supported (use ed25519 or RSA, or an age identity)"
                    ),
                }));
            }
            age::ssh::Identity::Encrypted(k) => {
                let pass = std::env::var("KSTONE_SSH_PASSPHRASE").map_err(|_| {
                    bad(
                        "is passphrase-protected: set KSTONE_SSH_PASSPHRASE to its passphrase \
                         (kstone does not prompt)"
                            .into(),
                    )
                })?;
                k.decrypt(pass.into())
                    .map_err(|_| bad("KSTONE_SSH_PASSPHRASE does not unlock it".into()))?
            }
        };
        Ok(Identities {
            ids: vec![Box::new(age::ssh::Identity::from(key))],
            source,
        })
    }
}

/// A new identity file's text and its public recipient.
pub fn generate_identity() -> (String, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created by kstone: {}\n# public key: {public}\n{}\n",
        crate::manifest::rfc3339(kstone_core::fsio::now_micros()),
        id.to_string().expose_secret()
    );
    (text, public)
}

fn encrypt_to<'r>(
    recipients: impl Iterator<Item = &'r dyn age::Recipient>,
    plain: &[u8],
) -> Result<Vec<u8>> {
    let enc = age::Encryptor::with_recipients(recipients)
        .map_err(|e| Error::Invalid(format!("age: {e}")))?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let io = |e: std::io::Error| Error::Invalid(format!("age: {e}"));
    let mut w = enc.wrap_output(&mut out).map_err(io)?;
    w.write_all(plain).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(out)
}

/// A repository's encryption state once opened: always able to seal; able
/// to open only when an identity unwrapped the data key.
pub struct Keys {
    seal: age::x25519::Recipient,
    open: Option<age::x25519::Identity>,
}

impl Keys {
    /// A fresh data key wrapped to `recipients`: the config section and the
    /// key object to store.
    pub fn create(recipients: &[String]) -> Result<(Keys, EncryptionConfig, WrappedKey)> {
        if recipients.is_empty() {
            return Err(Error::Invalid(
                "an encrypted repository needs a recipient".into(),
            ));
        }
        let data = age::x25519::Identity::generate();
        let cfg = EncryptionConfig {
            scheme: SCHEME.into(),
            data_recipient: data.to_public().to_string(),
        };
        let wrapped = wrap(&data, recipients)?;
        Ok((
            Keys {
                seal: data.to_public(),
                open: Some(data),
            },
            cfg,
            wrapped,
        ))
    }

    /// Keys of an existing repository; `identities` unlock reading.
    pub fn load(
        cfg: &EncryptionConfig,
        wrapped: &WrappedKey,
        identities: Option<&Identities>,
    ) -> Result<Keys> {
        if cfg.scheme != SCHEME {
            return Err(Error::Invalid(format!(
                "unsupported encryption scheme {:?} (this kstone knows {SCHEME:?})",
                cfg.scheme
            )));
        }
        let seal = parse_data_recipient(&cfg.data_recipient)?;
        let open = match identities {
            None => None,
            Some(ids) => {
                let data = unwrap(wrapped, ids)?;
                // The config names the data key writers encrypt to; a config
                // that names another key would make new backups unreadable.
                if data.to_public().to_string() != cfg.data_recipient {
                    return Err(Error::Corrupt {
                        object: crate::manifest::CONFIG_OBJECT.into(),
                        detail: "the data key in keys/data-key does not match the config's data_recipient".into(),
                    });
                }
                Some(data)
            }
        };
        Ok(Keys { seal, open })
    }

    pub fn can_open(&self) -> bool {
        self.open.is_some()
    }

    /// The data key re-wrapped to a new recipient set.
    pub fn rewrap(&self, recipients: &[String]) -> Result<WrappedKey> {
        let data = self.opener()?;
        wrap(data, recipients)
    }

    fn opener(&self) -> Result<&age::x25519::Identity> {
        self.open.as_ref().ok_or_else(|| {
            Error::CannotDecrypt(
                "the repository is encrypted: pass --identity FILE (or set KSTONE_IDENTITY_FILE) to read its data"
                    .into(),
            )
        })
    }

    /// A writer that encrypts into `out`; call `finish` on it.
    pub fn seal_writer<W: Write>(&self, out: W) -> Result<age::stream::StreamWriter<W>> {
        let enc = age::Encryptor::with_recipients(std::iter::once(&self.seal as _))
            .map_err(|e| Error::Invalid(format!("age: {e}")))?;
        enc.wrap_output(out)
            .map_err(|e| Error::Invalid(format!("age: {e}")))
    }

    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        encrypt_to(std::iter::once(&self.seal as &dyn age::Recipient), plain)
    }

    /// A reader of the plaintext of an encrypted object.
    pub fn open_reader<R: Read>(
        &self,
        input: R,
        object: &str,
    ) -> Result<age::stream::StreamReader<R>> {
        let id = self.opener()?;
        let d = age::Decryptor::new(input).map_err(|e| corrupt_age(object, e))?;
        d.decrypt(std::iter::once(id as &dyn age::Identity))
            .map_err(|e| corrupt_age(object, e))
    }

    pub fn open(&self, bytes: &[u8], object: &str) -> Result<Vec<u8>> {
        let mut r = self.open_reader(bytes, object)?;
        let mut out = Vec::with_capacity(bytes.len());
        r.read_to_end(&mut out).map_err(|e| Error::Corrupt {
            object: object.into(),
            detail: format!("decryption failed: {e}"),
        })?;
        Ok(out)
    }
}

fn corrupt_age(object: &str, e: age::DecryptError) -> Error {
    Error::Corrupt {
        object: object.into(),
        detail: format!("not a valid object of this repository's encryption: {e}"),
    }
}

fn wrap(data: &age::x25519::Identity, recipients: &[String]) -> Result<WrappedKey> {
    if recipients.is_empty() {
        return Err(Error::Invalid(
            "refusing to leave the repository with no recipient: nobody could restore it".into(),
        ));
    }
    let parsed = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<Vec<_>>>()?;
    let listed = recipients
        .iter()
        .map(|r| canonical_recipient(r))
        .collect::<Result<Vec<_>>>()?;
    let secret = data.to_string();
    let ct = encrypt_to(
        parsed.iter().map(|r| r.as_ref() as &dyn age::Recipient),
        secret.expose_secret().as_bytes(),
    )?;
    use base64::Engine;
    Ok(WrappedKey {
        recipients: listed,
        wrapped: base64::engine::general_purpose::STANDARD.encode(ct),
        updated_at_us: kstone_core::fsio::now_micros(),
    })
}

fn unwrap(w: &WrappedKey, ids: &Identities) -> Result<age::x25519::Identity> {
    use base64::Engine;
    let bad = |d: String| Error::Corrupt {
        object: KEY_OBJECT.into(),
        detail: d,
    };
    let ct = base64::engine::general_purpose::STANDARD
        .decode(w.wrapped.as_bytes())
        .map_err(|e| bad(format!("undecodable: {e}")))?;
    let d = age::Decryptor::new_buffered(&ct[..]).map_err(|e| bad(e.to_string()))?;
    let mut r = match d.decrypt(ids.ids.iter().map(|i| i.as_ref())) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => {
            return Err(Error::CannotDecrypt(format!(
                "no identity in {} can unlock this repository (it is encrypted to {})",
                ids.source,
                w.recipients.join(", ")
            )))
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut secret = String::new();
    r.read_to_string(&mut secret)
        .map_err(|e| bad(format!("decryption failed: {e}")))?;
    age::x25519::Identity::from_str(secret.trim())
        .map_err(|e| bad(format!("the data key is not an age identity: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_for(text: &str) -> Identities {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        Identities::from_file(f.path()).unwrap()
    }

    /// Keys of small order would let anyone unwrap the data key: refused.
    #[test]
    fn weak_recipient_keys_are_refused() {
        use base64::Engine;
        use bech32::ToBase32;
        let framed = |point: [u8; 32]| {
            let mut blob = Vec::new();
            for part in [&b"ssh-ed25519"[..], &point[..]] {
                blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
                blob.extend_from_slice(part);
            }
            format!(
                "ssh-ed25519 {}",
                base64::engine::general_purpose::STANDARD.encode(blob)
            )
        };
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        for weak in [framed([0; 32]), framed(neutral)] {
            let e = parse_recipient(&weak).err().unwrap();
            assert!(e.to_string().contains("small order"), "{e}");
        }
        let zero_age =
            bech32::encode("age", [0u8; 32].to_base32(), bech32::Variant::Bech32).unwrap();
        let e = parse_recipient(&zero_age).err().unwrap();
        assert!(e.to_string().contains("small order"), "{e}");
        // An RSA key whose 2048-bit modulus is prime (made for this test).
        let prime_rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC3yUUnhH63P3cM5MXfTD2L4+EAmTuBsjOJQu72D03y1W5gLgr+gchR8N9pp+qh752HbK+hO1F1a/j0tU3GrKElwYj2xR6jgLs6hJKqf80vWcjZdFD+01ckUQ5SHCa1ktrafSntQEZeuun0XbboNI3dyKE5lSvg3/HN3+dkoP5Hy3O10bPH9w1g/496B8Lr+3O4rDzP3WkdmL/V7nHyMFz+gXGXa/TW+l7bIkoKyxF+Q3BFm0fz+E/ZX+T/6R0r+HY3CijI2W1MarrJY6/LrzZP9Ye7knHwSEgcqcsSXDmyesbqv1v5hcWY28uHISNErHK0a0DdNBf6jjrtPDrZ1GVV";
        // And moduli p² and 3·q (made for this test).
        let square_rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAgUovOrDf3e5ZZd1nxMyClyBkJ3QNfvW05B9q293qcNSIonbqOZQ+FN6guphOaXa+pCKU9WPuFE+KedPwgHhkGIqKGTZwFM9RXYFn+FzQie2P1P6sXkGWa1+YVeSFbxyq8SAKa/U023YoRY7GFxkRflgOmpK1Th/xPirmgLuwnhnFEmmWIvbmvSpYH+737nhintuUlzL+CWdeLNrQkn7uWJs059BK1uDd7Xom4GkvyVa6naU5Ys9CmGpBIXTaDzipSFljPMczLZrNsIMRHUf5zYsL9ZnnNhe1zEmtIaoQZSOtoQVy0uqrz7jJ6+BSp1r+1kUjYBdnJjjWT22PM5SEKz9QQ==";
        let small_factor_rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQE3kNPb83BQhL0yoiXBUNGv/n9IqQ3Z+rY/WYH4U9EHBOFKJ6/G/UifD+7YbJa378mfNrw+1u7dySP48eK++f2uF9QHAJ1DcpjREkZADY6zJN2F354TTWHE+DyK02a4yAKCW7t3Lu4ZVHsnM3OXWe/MYDWb8yWakBqFltJbb7FLhTZXsP4tV6mwpCqFkbLsD12H8FwYq5kn39TPQhgZIrTixW6nwfSgTlI6sMmcwxrKLuFZSm6E+k2vEXeku3aSwt4TS66uipXsoCAI6oihozAkGiFmpntVq+E03hXCzoMRBHVmEaNY6/ziVGU0xKFq5bKY+2d1BVaM76oIRhEZZsT1";
        for weak in [prime_rsa, square_rsa, small_factor_rsa] {
            let e = parse_recipient(weak).err().unwrap();
            assert!(e.to_string().contains("private key follows"), "{e}");
        }
        // Real keys pass.
        let (_, good) = generate_identity();
        assert!(parse_recipient(&good).is_ok());
    }

    /// `authorized_keys` lines: options before the key, a BOM, comments.
    #[test]
    fn recipients_files_read_authorized_keys_lines() {
        let (_, a) = generate_identity();
        // A public key made by ssh-keygen for this test.
        let ssh =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGllbE/s5o4k6TB0tdixiWG+MonqAQPuzaBlenDZEvFT";
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            format!("\u{feff}# ops\n{a}\n\ncommand=\"x y\",no-pty {ssh} someone@host\n"),
        )
        .unwrap();
        let got = read_recipients_file(f.path()).unwrap();
        assert_eq!(got[0], a);
        assert!(got[1].starts_with(ssh), "{got:?}");
        assert_eq!(canonical_recipient(&got[1]).unwrap(), ssh);
        // A key inside a quoted option is an option, not the line's key.
        std::fs::write(
            f.path(),
            format!("command=\"echo ssh-rsa AAAA \\\" x\",no-pty {ssh} bob\n"),
        )
        .unwrap();
        assert_eq!(
            read_recipients_file(f.path()).unwrap(),
            vec![format!("{ssh} bob")]
        );
        for bad in [
            format!("command=\"echo {ssh}\" ecdsa-sha2-nistp256 AAAAE2Vj\n"),
            format!("command=\"unterminated {ssh}\n"),
            "age1notakey\n".to_string(),
        ] {
            std::fs::write(f.path(), &bad).unwrap();
            let e = read_recipients_file(f.path()).err().unwrap();
            assert!(e.to_string().contains("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn wrap_unwrap_rekey_and_wrong_identity() {
        let (alice_txt, alice) = generate_identity();
        let (bob_txt, bob) = generate_identity();
        let (keys, cfg, wrapped) = Keys::create(std::slice::from_ref(&alice)).unwrap();
        let ct = keys.seal(b"secret item").unwrap();
        assert!(!ct.windows(6).any(|w| w == b"secret"));

        let writer_only = Keys::load(&cfg, &wrapped, None).unwrap();
        assert!(!writer_only.can_open());
        assert!(writer_only.open(&ct, "x").is_err());
        assert!(writer_only.seal(b"more").is_ok());

        let a = Keys::load(&cfg, &wrapped, Some(&ids_for(&alice_txt))).unwrap();
        assert_eq!(a.open(&ct, "x").unwrap(), b"secret item");
        let err = Keys::load(&cfg, &wrapped, Some(&ids_for(&bob_txt)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no identity"), "{err}");

        let rewrapped = a.rewrap(std::slice::from_ref(&bob)).unwrap();
        let b = Keys::load(&cfg, &rewrapped, Some(&ids_for(&bob_txt))).unwrap();
        assert_eq!(b.open(&ct, "x").unwrap(), b"secret item");
        assert!(Keys::load(&cfg, &rewrapped, Some(&ids_for(&alice_txt))).is_err());
        assert!(a.rewrap(&[]).is_err());

        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(a.open(&bad, "x").is_err());
    }
}
