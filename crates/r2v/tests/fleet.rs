//! Two `r2v serve` nodes on one Postgres database (issue #13): every call of a request may go
//! to either node (submit on one; status, stream and result on the other), a node killed with
//! `kill -9` loses nothing (the other node's reaper requeues what its workers held, and the
//! other node's workers finish it), a Postgres crash and restart right after needs no
//! intervention, each webhook is delivered once though both nodes dispatch, and usage stays
//! exact.
//!
//! The other tests put nginx in front, with the balancer configuration the deployment guide
//! ships (`docs/nginx-r2v.conf`), and give each node its own data directory, as on separate
//! hosts: files go to an S3 server (`s3s-fs`, speaking the real protocol on loopback) and the
//! signing keys come from the shared database. Both official clients' suites pass while
//! consecutive calls alternate between the nodes, and the chaos run's requests (50 in flight at
//! every fault) survive a
//! worker's and a node's `kill -9`, a Postgres restart and an S3 outage.

mod util;

#[path = "../../r2v-store/tests/support/postgres.rs"]
mod postgres;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};
use util::nginx::Balancer;
use util::{
    FLASH, Receiver, Server, assert_one_ok_webhook_each, auth, free_port, http, repo_root,
    run_script, small, status, submit_with_webhook,
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
    let ids = submit_with_webhook(&client, &a, &key, &receiver.url, 12, "Request on a fleet");
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

/// `s3s-fs` (an S3 server over a directory) on a free loopback port, killed when dropped;
/// it can be stopped and started again on the same port and directory (an outage).
struct S3Server {
    child: Option<std::process::Child>,
    port: u16,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start(bucket: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        };
        server.start_again();
        server
    }

    /// Starts the server (again) on its port and directory.
    fn start_again(&mut self) {
        let binary = repo_root().join("target/tools/bin/s3s-fs");
        assert!(
            binary.exists(),
            "s3s-fs is not installed at {}; scripts/test.sh installs it",
            binary.display()
        );
        let child = std::process::Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                "r2v-test",
                "--secret-key",
                "r2v-test-secret",
            ])
            .arg(self.root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server: the bucket is unreachable until [`S3Server::start_again`].
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The credentials and endpoint, as the nodes read them from the environment.
    fn envs(&self) -> [(&str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "r2v-test"),
            ("AWS_SECRET_ACCESS_KEY", "r2v-test-secret"),
            ("AWS_REGION", "us-east-1"),
        ]
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
        count(&self.root.path().join(prefix))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node's flags on the shared database and bucket, with the balancer's URL as its own.
fn on_postgres_and_s3<'a>(database: &'a str, storage: &'a str, public: &'a str) -> [&'a str; 7] {
    [
        "--database-url",
        database,
        "--storage-url",
        storage,
        "--public-url",
        public,
        "--allow-private-urls",
    ]
}

/// The request id in a proxied call's path (`…/requests/{id}…`), if any.
fn request_id(uri: &str) -> Option<&str> {
    let rest = &uri[uri.find("/requests/")? + "/requests/".len()..];
    let id = rest.split(['/', '?']).next()?;
    (id.len() >= 32).then_some(id)
}

#[test]
fn the_official_clients_pass_through_nginx_over_two_nodes_on_postgres_and_s3() {
    let js = repo_root().join("tests/conformance/js");
    let py = repo_root().join("tests/conformance/py");
    let db = postgres::TempPostgres::start();
    let s3 = S3Server::start("r2v");
    // nginx (the guide's configuration) balances every call round robin over two nodes with
    // their own data directories, as on separate hosts; every URL the API hands out names
    // the balancer.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let args = [
        &on_postgres_and_s3(&db.url, "s3://r2v/fleet", &public)[..],
        &["--x264-preset", "ultrafast"],
    ]
    .concat();
    // One worker in the fleet, on node A: the suites cancel a request they expect still queued.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = |dir: &Path, workers: &str| {
        let args = [&args[..], &["--workers", workers]].concat();
        Server::start_with_env(dir, &args, &s3.envs())
    };
    let a = node(dir_a.path(), "1");
    let key = a.key.clone().expect("the first node creates the first key");
    let b = node(dir_b.path(), "0");
    let balancer = Balancer::start(&[&a.base, &b.base], Some(port));
    run_script(
        Path::new("node"),
        &js.join("conformance.mjs"),
        &balancer,
        &key,
        &[],
    );
    run_script(
        &py.join(".venv/bin/python"),
        &py.join("conformance.py"),
        &balancer,
        &key,
        &[],
    );

    // Consecutive calls of one request went to different nodes: submit on one, status,
    // stream and result on either.
    let served = balancer.served();
    let mut calls: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for call in &served {
        if let Some(id) = request_id(&call.uri) {
            calls.entry(id).or_default().push(&call.upstream);
        }
    }
    let followed: Vec<&Vec<&str>> = calls.values().filter(|c| c.len() >= 2).collect();
    let both = followed
        .iter()
        .filter(|c| c.iter().any(|u| *u != c[0]))
        .count();
    let (pairs, switched) = followed.iter().fold((0, 0), |(n, k), c| {
        let s = c.windows(2).filter(|w| w[0] != w[1]).count();
        (n + c.len() - 1, k + s)
    });
    println!(
        "{} requests followed by the clients; {both} served by both nodes; {switched} of \
         {pairs} consecutive calls changed node",
        followed.len()
    );
    assert!(followed.len() >= 10, "{served:?}");
    assert!(both * 10 >= followed.len() * 9, "{calls:?}");
    assert!(switched * 2 >= pairs, "{calls:?}");
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

/// A request's status through the balancer, or `None` while nothing answers in JSON (a node
/// just died, the database is restarting).
fn status_now(
    client: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    id: &str,
) -> Option<Value> {
    client
        .get(format!("{base}/wan/v2.6/requests/{id}/status?logs=1"))
        .header("authorization", auth(key))
        .send()
        .ok()?
        .json::<Value>()
        .ok()
        .filter(|s| s["status"].is_string())
}

/// Follows a request's status stream through the balancer to its end, connecting again (as
/// a client does) when the node under it dies; returns how many connections it took.
fn follow_stream(base: &str, key: &str, id: &str) -> usize {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(600);
    for connection in 1.. {
        assert!(Instant::now() < deadline, "the stream of {id} never ended");
        let response = client
            .get(format!("{base}/wan/v2.6/requests/{id}/status/stream"))
            .header("authorization", auth(key))
            .send();
        if let Ok(response) = response.and_then(|r| r.error_for_status()) {
            let ended = BufReader::new(response)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
                .filter_map(|data| serde_json::from_str::<Value>(&data).ok())
                .any(|event| event["status"] == "COMPLETED");
            if ended {
                return connection;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// Issue #13's chaos run: preview requests with webhooks, submitted through nginx to two nodes
/// on Postgres and S3 with two remote workers, 50 in flight at every fault (topped up before
/// each), survive a worker's `kill -9`, a node's `kill -9` under open status streams, a
/// Postgres restart and a 10 s S3 outage: each completes once, with one OK webhook, and usage
/// is exact.
#[test]
fn fifty_requests_survive_a_worker_kill_a_node_kill_a_postgres_restart_and_an_s3_outage() {
    let db = postgres::TempPostgres::start();
    let mut s3 = S3Server::start("r2v");
    let receiver = Receiver::start();
    let client = http();
    let token = "worker-token-for-the-chaos-run-0123";
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let args = [
        &on_postgres_and_s3(&db.url, "s3://r2v/chaos", &public)[..],
        &[
            "--workers",
            "0",
            "--worker-token",
            token,
            "--lease-seconds",
            "4",
            "--heartbeat-seconds",
            "1",
        ],
    ]
    .concat();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Server::start_with_env(dir_a.path(), &args, &s3.envs());
    let key = a.key.clone().expect("the first node creates the first key");
    let b = Server::start_with_env(dir_b.path(), &args, &s3.envs());
    let balancer = Balancer::start(&[&a.base, &b.base], Some(port));
    let worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_r2v"))
            .args(["worker", "--api", &public, "--token", token])
            .args(["--x264-preset", "ultrafast", "--heartbeat-seconds", "1"])
            .env("R2V_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut workers = [worker(), worker()];

    let submit =
        |n: usize| submit_with_webhook(&client, &balancer, &key, &receiver.url, n, "Chaos");
    let mut ids = submit(50);
    // Six clients follow the last requests' streams; round robin puts about half on node A.
    let streams: Vec<_> = ids[44..]
        .iter()
        .map(|id| {
            let (base, key, id) = (public.clone(), key.clone(), id.clone());
            std::thread::spawn(move || follow_stream(&base, &key, &id))
        })
        .collect();
    let completed = |ids: &[String]| {
        ids.iter()
            .filter(|id| {
                status_now(&client, &public, &key, id).is_some_and(|s| s["status"] == "COMPLETED")
            })
            .count()
    };
    // Waits until `n` requests have completed, then tops the run up to 50 in flight: every
    // fault hits 50 requests.
    let before_fault = |ids: &mut Vec<String>, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut done = completed(ids);
        while done < n {
            assert!(Instant::now() < deadline, "fewer than {n} completed");
            std::thread::sleep(Duration::from_millis(200));
            done = completed(ids);
        }
        let in_flight = ids.len() - done;
        ids.extend(submit(50usize.saturating_sub(in_flight)));
    };
    before_fault(&mut ids, 3);
    let _ = workers[0].kill();
    let _ = workers[0].wait();
    before_fault(&mut ids, 10);
    a.kill9();
    before_fault(&mut ids, 20);
    db.restart();
    before_fault(&mut ids, 30);
    s3.stop();
    std::thread::sleep(Duration::from_secs(10));
    s3.start_again();
    util::wait_all_completed(&client, &balancer, &key, &ids, Duration::from_secs(600));

    let connections: Vec<usize> = streams.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        connections.iter().any(|&c| c > 1),
        "a stream on the killed node moved to the other: {connections:?}"
    );
    let statuses: Vec<Value> = ids
        .iter()
        .map(|id| status_now(&client, &public, &key, id).unwrap())
        .collect();
    for s in &statuses {
        assert!(s.get("error").is_none(), "{s}");
    }
    let retried = statuses
        .iter()
        .filter(|s| s["logs"].to_string().contains("(attempt 2)"))
        .count();
    assert!(retried >= 1, "the killed worker's request ran again");
    for id in &ids {
        let response = util::result(&client, &balancer, &key, id);
        assert_eq!(response.status(), 200, "{id}");
    }
    assert_one_ok_webhook_each(&client, &balancer, &receiver, &ids);
    let usage: Value = client
        .get(format!("{public}/usage"))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(usage["total"]["requests"], ids.len(), "{usage}");
    // Flash requests at 720p, 5 s, no audio: $0.125 each.
    let cost = usage["total"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.125 * ids.len() as f64).abs() < 1e-9, "{usage}");
    assert!(
        s3.objects_under("r2v/chaos/outputs") >= ids.len(),
        "the outputs are in the bucket"
    );
    println!(
        "chaos: {} requests; stream connections {connections:?}; {retried} request(s) ran a \
         second attempt",
        ids.len()
    );
    for w in &mut workers[1..] {
        let _ = w.kill();
        let _ = w.wait();
    }
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
