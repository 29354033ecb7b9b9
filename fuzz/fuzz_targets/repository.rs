//! Backup repository objects: config, backup manifests, the wrapped data
//! key, archived-WAL objects, and age-sealed data objects.
#![no_main]
use std::sync::OnceLock;

use kstone_backup::crypto::{generate_identity, EncryptionConfig, Keys, WrappedKey, KEY_MAGIC};
use kstone_backup::manifest::{decode, BackupManifest, RepoConfig, CONFIG_MAGIC, MANIFEST_MAGIC};
use kstone_backup::wal_archive;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (Keys, EncryptionConfig, WrappedKey) {
    static K: OnceLock<(Keys, EncryptionConfig, WrappedKey)> = OnceLock::new();
    K.get_or_init(|| {
        let (_, public) = generate_identity();
        Keys::create(&[public]).expect("keys")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode::<RepoConfig>(CONFIG_MAGIC, data, "config");
    let _ = decode::<BackupManifest>(MANIFEST_MAGIC, data, "manifest");
    let _ = decode::<WrappedKey>(KEY_MAGIC, data, "keys/data-key");
    let _ = wal_archive::decode(data, "wal");
    let _ = keys().0.open(data, "sealed");
});
