//! Two `r2v serve` nodes on one Postgres database (issue #13's first step): every call of a
//! request may go to either node (submit on one; status, stream and result on the other),
//! a node killed with `kill -9` loses nothing (the other node's reaper requeues what its
//! workers held, and the other node's workers finish it), a Postgres crash and restart right
//! after needs no intervention, each webhook is delivered once though both nodes dispatch,
//! and usage stays exact.
//!
//! The second test gives each node its own data directory, as on separate hosts: files go to
//! an S3 server (`s3s-fs`, speaking the real protocol on loopback) and the signing keys come
//! from the shared database; the official clients' suites run against one node while every
//! URL the server hands out names the other.

mod util;

#[path = "../../r2v-store/tests/support/postgres.rs"]
mod postgres;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};
use util::{
    FLASH, Receiver, Server, assert_one_ok_webhook_each, auth, free_port, http, repo_root,
    run_script, small, status,
};

#[test]
fn two_nodes_on_one_postgres_share_the_queue_and_survive_a_kill_9() {
    let db = postgres::TempPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let receiver = Receiver::start();
    let args = [
        "--allow-private-urls",
        "--database-url",
        &db.url,
        "--x264-preset",
        "ultrafast",
        "--lease-seconds",
        "4",
        "--heartbeat-seconds",
        "1",
    ];
    let mut a = Server::start(dir.path(), &args);
    let key = a.key.clone().expect("the first node creates the first key");
    let b = Server::start(dir.path(), &args);
    assert!(
        b.key.is_none(),
        "the second node finds the key in the shared database"
    );

    // Submit on A, follow on B.
    let ids: Vec<String> = (0..12)
        .map(|i| {
            let response: Value = client
                .post(format!("{}/{FLASH}?fal_webhook={}", a.base, receiver.url))
                .header("authorization", auth(&key))
                .json(&small(&format!("Request {i} on a fleet.")))
                .send()
                .unwrap()
                .json()
                .unwrap();
            response["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let first = status(&client, &b, &key, &ids[0]);
    assert!(
        first["status"].is_string(),
        "node B knows node A's request: {first}"
    );
    // An SSE stream on B of a request submitted on A runs to COMPLETED.
    let stream = client
        .get(format!(
            "{}/wan/v2.6/requests/{}/status/stream",
            b.base, ids[0]
        ))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    let last = BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        .last()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&last).unwrap()["status"],
        "COMPLETED"
    );

    // kill -9 node A while some requests are running on it and others are queued.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids
        .iter()
        .filter(|id| status(&client, &b, &key, id)["status"] == "COMPLETED")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "nothing completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill9();
    // Postgres crashes and comes back; node B and its worker reconnect by themselves.
    db.restart();
    util::wait_all_completed(&client, &b, &key, &ids, Duration::from_secs(300));
    for id in &ids {
        let response = util::result(&client, &b, &key, id);
        assert_eq!(response.status(), 200, "{id}");
        let output: Value = response.json().unwrap();
        // Output URLs name the node that stored them (a fleet sets --public-url to its load
        // balancer); any node serves them.
        let url = output["video"]["url"].as_str().unwrap();
        let path = &url[url.find("/files/").unwrap()..];
        let file = client.get(format!("{}{path}", b.base)).send().unwrap();
        assert_eq!(file.status(), 200, "node B serves {url}");
    }
    // Both nodes run a webhook dispatcher; each delivery is claimed, so it is sent once.
    assert_one_ok_webhook_each(&client, &b, &receiver, &ids);
    let usage: Value = client
        .get(format!("{}/usage", b.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        usage["total"]["requests"], 12,
        "each request counted once: {usage}"
    );
    // 12 flash requests at 720p, 5 s, no audio: 12 × $0.125.
    let cost = usage["total"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 1.5).abs() < 1e-9, "{usage}");
}

/// `s3s-fs` (an S3 server over a directory) on a free loopback port, killed when dropped.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl S3Server {
    fn start(bucket: &str) -> Self {
        let binary = repo_root().join("target/tools/bin/s3s-fs");
        assert!(
            binary.exists(),
            "s3s-fs is not installed at {}; scripts/test.sh installs it",
            binary.display()
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let port = free_port();
        let child = std::process::Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "r2v-test",
                "--secret-key",
                "r2v-test-secret",
            ])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _root: root,
        }
    }

    fn objects_under(&self, prefix: &str) -> usize {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        }
        count(&self._root.path().join(prefix))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_official_clients_pass_against_two_nodes_on_postgres_and_s3() {
    let js = repo_root().join("tests/conformance/js");
    let py = repo_root().join("tests/conformance/py");
    let db = postgres::TempPostgres::start();
    let s3 = S3Server::start("r2v");
    let envs = [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "r2v-test"),
        ("AWS_SECRET_ACCESS_KEY", "r2v-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    // Node B serves every URL the fleet hands out (its --public-url stands in for a load
    // balancer); node A takes the clients' calls and runs the only worker.
    let port_b = free_port();
    let public = format!("http://127.0.0.1:{port_b}");
    let listen_b = format!("127.0.0.1:{port_b}");
    let shared = [
        "--database-url",
        &db.url,
        "--storage-url",
        "s3://r2v/fleet",
        "--public-url",
        &public,
        "--allow-private-urls",
        "--x264-preset",
        "ultrafast",
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with_env(
        dir_a.path(),
        &[&shared[..], &["--workers", "1"]].concat(),
        &envs,
    );
    let key = a.key.clone().expect("the first node creates the first key");
    let b = Server::start_with_env(
        dir_b.path(),
        &[&shared[..], &["--workers", "0", "--listen", &listen_b]].concat(),
        &envs,
    );
    assert_eq!(b.base, public);
    let public_base: &std::ffi::OsStr = public.as_ref();
    run_script(
        Path::new("node"),
        &js.join("conformance.mjs"),
        &a,
        &key,
        &[("R2V_PUBLIC_BASE", public_base)],
    );
    run_script(
        &py.join(".venv/bin/python"),
        &py.join("conformance.py"),
        &a,
        &key,
        &[("R2V_PUBLIC_BASE", public_base)],
    );
    assert!(
        s3.objects_under("r2v/fleet/outputs") > 0,
        "outputs are in the bucket"
    );
    assert!(
        s3.objects_under("r2v/fleet/uploads") > 0,
        "uploads are in the bucket"
    );
    assert!(
        !dir_a.path().join("files").exists() && !dir_b.path().join("files").exists(),
        "nothing is stored on a node's disk"
    );
}

#[test]
fn sigterm_drains_a_remote_worker() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let token = "worker-token-for-tests-0123456789";
    let server = Server::start(dir.path(), &["--workers", "0", "--worker-token", token]);
    let key = server.key.clone().unwrap();
    let id: Value = client
        .post(format!("{}/{FLASH}", server.base))
        .header("authorization", auth(&key))
        .json(&small("Drained gracefully."))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = id["request_id"].as_str().unwrap().to_owned();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args([
            "worker",
            "--api",
            &server.base,
            "--token",
            token,
            "--x264-preset",
            "ultrafast",
        ])
        .env("R2V_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&client, &server, &key, &id)["status"] != "IN_PROGRESS" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = worker.wait().unwrap();
    assert!(exit.success(), "the worker exits cleanly: {exit:?}");
    let s: Value = client
        .get(format!(
            "{}/wan/v2.6/requests/{id}/status?logs=1",
            server.base
        ))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        s["status"], "COMPLETED",
        "the request it held was finished: {s}"
    );
    assert!(s.get("error").is_none(), "{s}");
    assert!(!s["logs"].to_string().contains("attempt 2"), "{s}");
}
