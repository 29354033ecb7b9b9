//! A real S3-compatible server for the tests: moto's S3 server on loopback,
//! started once per test binary (or taken from `KSTONE_TEST_S3_ENDPOINT`,
//! as `.ci/run` does), and a fault-injecting TCP proxy in front of it that
//! can cut connections or answer 503 — network faults, not an S3 mock.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "kstone-test";
/// moto pinned so that CI and hand runs test against the same server.
pub const MOTO: &str = "moto[s3]==5.2.5";

pub struct S3Server {
    pub endpoint: String,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Create `.venv-s3` with moto unless it is there (one installer at a time
/// across test binaries).
pub fn ensure_moto() -> PathBuf {
    let root = workspace();
    let bin = root.join(".venv-s3/bin/moto_server");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(root.join("target")).unwrap();
    let lock = std::fs::File::create(root.join("target/.venv-s3.lock")).unwrap();
    lock.lock().unwrap();
    if !bin.exists() {
        let venv = root.join(".venv-s3");
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the S3 tests");
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", MOTO, "flask", "flask-cors"])
            .status()
            .unwrap();
        assert!(st.success(), "pip install moto failed");
    }
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a moto server on `port`; it dies with this process (PDEATHSIG of
/// the spawning thread, which is kept alive for that reason).
pub fn spawn_moto(port: u16) -> u32 {
    let bin = ensure_moto();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child: Child = cmd.spawn().expect("start moto_server");
        tx.send(child.id()).unwrap();
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    let pid = rx.recv().unwrap();
    wait_for_port(port);
    pid
}

pub fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "S3 server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `PUT /bucket` — moto accepts it unsigned; an external server is expected
/// to have the bucket already.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if let Ok(mut s) = TcpStream::connect(hostport) {
        let _ = write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

pub fn server() -> &'static S3Server {
    SERVER.get_or_init(|| {
        let endpoint = match std::env::var("KSTONE_TEST_S3_ENDPOINT") {
            Ok(ep) if !ep.is_empty() => ep,
            _ => {
                let port = free_port();
                spawn_moto(port);
                format!("http://127.0.0.1:{port}")
            }
        };
        create_bucket(&endpoint, BUCKET);
        S3Server { endpoint }
    })
}

/// Environment for a `kstone` process talking to `endpoint`.
pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "kstone-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "kstone-test-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// The environment of the shared server, once it has been started.
pub fn env() -> Vec<(&'static str, String)> {
    SERVER
        .get()
        .map(|s| env_for(&s.endpoint))
        .unwrap_or_default()
}

/// A new bucket of its own (moto lists a bucket by walking all of it, so
/// tests sharing one would slow each other down) and a location in it.
pub fn new_location(name: &str) -> (String, String) {
    let s = server();
    static N: AtomicU64 = AtomicU64::new(0);
    let bucket = format!(
        "{BUCKET}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000
    );
    create_bucket(&s.endpoint, &bucket);
    let loc = format!("s3://{bucket}/backups/{name}");
    (bucket, loc)
}

/// An object_store client for the tests' own look at a bucket (the code
/// under test builds its own from the AWS environment variables).
pub fn store(endpoint: &str, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
    kstone_backup::storage::install_tls_provider();
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("kstone-test")
            .with_secret_access_key("kstone-test-secret")
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                ..Default::default()
            })
            .build()
            .unwrap(),
    )
}

/// What the proxy does with traffic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Pass,
    /// Drop every connection, as a dead server would.
    Down,
}

/// A TCP proxy in front of an S3 server.
pub struct FaultProxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    /// Answer this many requests with `503 Slow Down` instead of forwarding.
    errors: Arc<AtomicUsize>,
    /// Cut off this many list responses part-way through their body.
    cut_lists: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    pub forwarded: Arc<AtomicU64>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = FaultProxy {
            port,
            mode: Arc::new(Mutex::new(Mode::Pass)),
            errors: Arc::new(AtomicUsize::new(0)),
            cut_lists: Arc::new(AtomicUsize::new(0)),
            conns: Arc::new(Mutex::new(Vec::new())),
            forwarded: Arc::new(AtomicU64::new(0)),
        };
        let (mode, errors, cut_lists, conns, fwd) = (
            p.mode.clone(),
            p.errors.clone(),
            p.cut_lists.clone(),
            p.conns.clone(),
            p.forwarded.clone(),
        );
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                if *mode.lock().unwrap() == Mode::Down {
                    let _ = c.shutdown(Shutdown::Both);
                    continue;
                }
                if errors
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    std::thread::spawn(move || answer_503(c));
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                fwd.fetch_add(1, Ordering::Relaxed);
                conns.lock().unwrap().push(c.try_clone().unwrap());
                conns.lock().unwrap().push(up.try_clone().unwrap());
                // Set by the request direction when it forwards a list
                // request to be cut; the response direction then cuts the
                // response that follows (HTTP/1.1 without pipelining).
                let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
                requests(
                    c.try_clone().unwrap(),
                    up.try_clone().unwrap(),
                    cut_lists.clone(),
                    cut.clone(),
                );
                responses(up, c, cut);
            }
        });
        p
    }

    /// A proxy in front of the shared server ([`server`]).
    pub fn in_front_of_the_server() -> FaultProxy {
        let endpoint = &server().endpoint;
        let port = endpoint.rsplit(':').next().and_then(|p| p.parse().ok());
        FaultProxy::start(port.unwrap_or_else(|| panic!("no port in {endpoint}")))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cut every open connection and refuse new ones (or serve again).
    pub fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
        if m == Mode::Down {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn fail_next(&self, n: usize) {
        self.errors.store(n, Ordering::SeqCst);
    }

    /// Cut the connection in the middle of the body of the next `n` list
    /// responses (after their `200 OK` head), as a dropped connection or
    /// a restarting server would.
    pub fn cut_next_lists(&self, n: usize) {
        self.cut_lists.store(n, Ordering::SeqCst);
    }

    /// List responses still to be cut.
    pub fn lists_to_cut(&self) -> usize {
        self.cut_lists.load(Ordering::SeqCst)
    }
}

/// Forward client bytes upstream; on a list request (`list-type=2` in its
/// request line) while `cut_lists` is positive, take one and set `cut`.
fn requests(
    mut from: TcpStream,
    mut to: TcpStream,
    cut_lists: Arc<AtomicUsize>,
    cut: Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let is_list = chunk.starts_with(b"GET ")
                && chunk
                    .split(|&b| b == b'\n')
                    .next()
                    .is_some_and(|line| line.windows(11).any(|w| w == b"list-type=2"));
            if is_list
                && cut_lists
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                cut.store(true, Ordering::SeqCst);
            }
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Forward upstream bytes to the client; once `cut` is set, pass the next
/// response's head and a few bytes of its body, then close both sides.
fn responses(mut from: TcpStream, mut to: TcpStream, cut: Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut head: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !cut.load(Ordering::SeqCst) {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                continue;
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let keep = (end + 4 + 16).min(head.len());
                let _ = to.write_all(&head[..keep]);
                let _ = to.flush();
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn answer_503(mut c: TcpStream) {
    // Read the request head (and whatever body arrives quickly), then refuse.
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 65536];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let _ = write!(
        c,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = c.shutdown(Shutdown::Both);
}
