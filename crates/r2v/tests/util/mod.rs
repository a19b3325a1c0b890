//! Helpers for the CLI tests: the built `r2v` binary, a temp dir per test, and ffprobe.

#![allow(dead_code)]

pub mod nginx;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Something that answers the API at a base URL: one node, or a balancer in front of several.
pub trait Endpoint {
    /// `http://HOST:PORT`.
    fn base(&self) -> &str;
}

impl Endpoint for Server {
    fn base(&self) -> &str {
        &self.base
    }
}

/// The repository root (the bundled examples live under it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `r2v` with `args`, run from the repository root.
pub fn r2v(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("R2V_LOG")
        .output()
        .expect("running r2v")
}

/// stdout parsed as JSON.
pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// What the real ffprobe says about a file: streams (frames counted) and format.
pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first stream of `kind` (`video` or `audio`).
pub fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
}

/// A string field of ffprobe's JSON as a number.
pub fn num(value: &Value) -> f64 {
    value
        .as_str()
        .map_or_else(|| value.as_f64().unwrap(), |s| s.parse().unwrap())
}

/// Top-level mp4 box names in file order.
pub fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        let size = if size == 1 {
            u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize
        } else {
            size
        };
        if size < 8 {
            break;
        }
        at += size;
    }
    names
}

/// A running `r2v serve` child process on a free loopback port.
pub struct Server {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The key printed on first start, if any.
    pub key: Option<String>,
}

impl Server {
    /// Starts `r2v serve --listen 127.0.0.1:0 --data-dir DIR ARGS…` and waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_with_env(data_dir, args, &[])
    }

    /// [`Server::start`] with more environment variables (and `--listen` when ARGS has none).
    pub fn start_with_env(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_r2v"))
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied())
            .env("R2V_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting r2v serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("r2v serve printed nothing");
        let base = first
            .strip_prefix("r2v serve listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        let key = rx
            .recv_timeout(std::time::Duration::from_secs(2))
            .ok()
            .and_then(|l| {
                l.strip_prefix("created an API key (shown once; only its hash is stored): ")
                    .map(str::to_owned)
            });
        Server {
            child: Some(child),
            base,
            key,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// The server's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib / 1024.0
    }

    /// How many file descriptors the server has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The flash endpoint.
pub const FLASH: &str = "wan/v2.6/reference-to-video/flash";

/// A cheap request: the shortest, smallest output, no audio.
pub fn small(prompt: &str) -> Value {
    serde_json::json!({"prompt": prompt, "resolution": "720p", "duration": "5", "enable_audio": false})
}

/// The `Authorization` value for an API key.
pub fn auth(key: &str) -> String {
    format!("Key {key}")
}

/// A request's status (`GET …/requests/{id}/status`).
pub fn status(
    client: &reqwest::blocking::Client,
    server: &impl Endpoint,
    key: &str,
    id: &str,
) -> Value {
    client
        .get(format!("{}/wan/v2.6/requests/{id}/status", server.base()))
        .header("authorization", auth(key))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// A request's result (`GET …/requests/{id}`), as it came.
pub fn result(
    client: &reqwest::blocking::Client,
    server: &impl Endpoint,
    key: &str,
    id: &str,
) -> reqwest::blocking::Response {
    client
        .get(format!("{}/wan/v2.6/requests/{id}", server.base()))
        .header("authorization", auth(key))
        .send()
        .unwrap()
}

/// Submits `body` to `endpoint` (e.g. `wan/v2.6/reference-to-video`), waits up to 300 s
/// for it to complete and answers its log messages and its output object.
pub fn generate(server: &Server, endpoint: &str, body: &Value) -> (Vec<String>, Value) {
    let client = http();
    let key = server.key.clone().expect("the server printed a key");
    let submitted: Value = client
        .post(format!("{}/{endpoint}", server.base))
        .header("authorization", auth(&key))
        .json(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    let root = format!("{}/wan/v2.6/requests/{id}", server.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        let status: Value = client
            .get(format!("{root}/status?logs=1"))
            .header("authorization", auth(&key))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if status["status"] == "COMPLETED" || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(status["status"], "COMPLETED", "{status}");
    let logs = status["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect();
    let output = client
        .get(&root)
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (logs, output)
}

/// Submits `n` [`small`] flash requests (prompts `"{what} {i}."`) with a webhook; their ids.
pub fn submit_with_webhook(
    client: &reqwest::blocking::Client,
    server: &impl Endpoint,
    key: &str,
    webhook: &str,
    n: usize,
    what: &str,
) -> Vec<String> {
    (0..n)
        .map(|i| {
            let response: Value = client
                .post(format!("{}/{FLASH}?fal_webhook={webhook}", server.base()))
                .header("authorization", auth(key))
                .json(&small(&format!("{what} {i}.")))
                .send()
                .unwrap()
                .json()
                .unwrap();
            response["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Waits until every request in `ids` is `COMPLETED`, for at most `limit`.
pub fn wait_all_completed(
    client: &reqwest::blocking::Client,
    server: &impl Endpoint,
    key: &str,
    ids: &[String],
    limit: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let pending: Vec<&String> = ids
            .iter()
            .filter(|id| status(client, server, key, id)["status"] != "COMPLETED")
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests never completed",
            pending.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Runs `program script` against `server` (`R2V_BASE`, `R2V_KEY`, `R2V_EXAMPLES` and `envs` in
/// its environment), prints its output, and fails the test if it fails.
pub fn run_script(
    program: &Path,
    script: &Path,
    server: &impl Endpoint,
    key: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) {
    let out = Command::new(program)
        .arg(script)
        .env("R2V_BASE", server.base())
        .env("R2V_KEY", key)
        .env("R2V_EXAMPLES", repo_root().join("examples"))
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A blocking HTTP client (the TLS provider is installed the way the binary does it).
pub fn http() -> reqwest::blocking::Client {
    let _ = r2v_media::fetch::Fetcher::new(r2v_media::fetch::FetchPolicy::default());
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

/// One webhook delivery: lower-cased headers and the body.
pub type Delivery = (std::collections::HashMap<String, String>, Vec<u8>);

/// A webhook receiver on loopback: records every delivery's headers and body.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// Every delivery so far.
    pub deliveries: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// Starts the receiver thread.
    pub fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let deliveries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = deliveries.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut headers = std::collections::HashMap::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                sink.lock().unwrap().push((headers, body));
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, deliveries }
    }
}

/// Waits for the deliveries, then checks that every id got exactly one OK delivery whose
/// signature verifies against the server's JWKS.
pub fn assert_one_ok_webhook_each(
    client: &reqwest::blocking::Client,
    server: &impl Endpoint,
    receiver: &Receiver,
    ids: &[String],
) {
    wait_for_webhooks(receiver, ids.len());
    let jwks: serde_json::Value = client
        .get(format!("{}/.well-known/jwks.json", server.base()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    use base64::Engine;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use sha2::{Digest, Sha256};
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    let deliveries = receiver.deliveries.lock().unwrap();
    let mut per_id: std::collections::HashMap<String, usize> = Default::default();
    for (headers, body) in deliveries.iter() {
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["status"], "OK", "{payload}");
        let id = payload["request_id"].as_str().unwrap().to_owned();
        let message = format!(
            "{id}\n{}\n{}\n{}",
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hex::encode(Sha256::digest(body))
        );
        let signature =
            Signature::from_slice(&hex::decode(&headers["x-fal-webhook-signature"]).unwrap())
                .unwrap();
        key.verify(message.as_bytes(), &signature)
            .expect("the webhook signature verifies");
        *per_id.entry(id).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            per_id.get(id),
            Some(&1),
            "request {id} got {:?} webhooks",
            per_id.get(id)
        );
    }
    assert_eq!(per_id.len(), ids.len());
}

pub fn wait_for_webhooks(receiver: &Receiver, n: usize) {
    // A delivery claimed by a node that died is retried after its lease (60 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while receiver.deliveries.lock().unwrap().len() < n {
        assert!(std::time::Instant::now() < deadline, "webhooks missing");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Any duplicate would follow quickly; give it the chance to show up.
    std::thread::sleep(std::time::Duration::from_secs(2));
}

/// A free loopback port (free when asked; a server started right after can take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
