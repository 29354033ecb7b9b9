//! S3 (and S3-compatible) repositories: settings from flags and the
//! environment, which endpoints may be used (and over what), the TLS
//! provider, the retry policy, and the `object_store` client built from
//! them.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{Attribute, Attributes, BackoffConfig, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

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

/// rustls needs one process-wide crypto provider; ring avoids aws-lc's C
/// build. Installing twice is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Retries of one S3 request: transient errors (5xx, timeouts, refused
/// connections) are retried with exponential backoff for at most this long.
pub(super) fn retry() -> RetryConfig {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: num("KSTONE_S3_MAX_RETRIES").unwrap_or(10) as usize,
        retry_timeout: Duration::from_secs(num("KSTONE_S3_RETRY_TIMEOUT_SECS").unwrap_or(120)),
    }
}

fn config_key(name: &str) -> Result<AmazonS3ConfigKey> {
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

/// The client for `s3://<rest>` (`location` as the user wrote it, for
/// messages) and the attributes every new object gets (its storage class).
/// Endpoint, region and credentials come from the standard AWS environment
/// variables.
pub(super) fn open(
    location: &str,
    rest: &str,
    s3: &S3Settings,
) -> Result<(Arc<dyn ObjectStore>, Attributes)> {
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
        .with_retry(retry());
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
            b = b.with_config(config_key("aws_server_side_encryption")?, v);
            if let Some(k) = &s3.sse_kms_key_id {
                b = b.with_config(config_key("aws_sse_kms_key_id")?, k.as_str());
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
    Ok((store, attributes))
}

#[cfg(test)]
mod tests {
    use super::*;

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
