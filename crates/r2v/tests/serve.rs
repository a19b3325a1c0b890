//! `r2v serve` over real HTTP: the official clients' conformance scripts, durability
//! across `kill -9` of the server and of a remote worker, per-key isolation, bad input,
//! queue order, start timeouts and metrics. Each test runs its own server process on a
//! free loopback port with SQLite in a temp dir and the preview engine.

mod util;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use util::{
    FLASH, Receiver, Server, assert_one_ok_webhook_each, auth, http, repo_root, result, run_script,
    small, status, wait_all_completed,
};

fn submit(
    client: &Client,
    server: &Server,
    key: &str,
    body: &Value,
    webhook: Option<&str>,
) -> String {
    let mut url = format!("{}/{FLASH}", server.base);
    if let Some(hook) = webhook {
        url = format!("{url}?fal_webhook={}", url_encode(hook));
    }
    let response = client
        .post(url)
        .header("authorization", auth(key))
        .json(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn require_client(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed at {}; scripts/test.sh installs it",
        path.display()
    );
}

#[test]
fn official_clients_pass_against_r2v_serve() {
    let js = repo_root().join("tests/conformance/js");
    let py = repo_root().join("tests/conformance/py");
    require_client(&js.join("node_modules/@fal-ai/client"), "@fal-ai/client");
    require_client(&py.join(".venv/bin/python"), "the fal-client venv");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--allow-private-urls", "--x264-preset", "ultrafast"],
    );
    let key = server.key.clone().expect("the first start prints a key");
    run_script(
        Path::new("node"),
        &js.join("conformance.mjs"),
        &server,
        &key,
        &[],
    );
    run_script(
        &py.join(".venv/bin/python"),
        &py.join("conformance.py"),
        &server,
        &key,
        &[],
    );
}

#[test]
fn twenty_requests_survive_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let receiver = Receiver::start();
    let args = [
        "--allow-private-urls",
        "--x264-preset",
        "ultrafast",
        "--workers",
        "2",
    ];
    let mut server = Server::start(dir.path(), &args);
    let key = server.key.clone().unwrap();
    let ids: Vec<String> = (0..20)
        .map(|i| {
            submit(
                &client,
                &server,
                &key,
                &small(&format!("Request number {i}.")),
                Some(&receiver.url),
            )
        })
        .collect();
    // Kill it mid-run: some requests done, some rendering, most still queued.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ids
        .iter()
        .any(|id| status(&client, &server, &key, id)["status"] == "COMPLETED")
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    let server = Server::start(dir.path(), &args);
    assert!(server.key.is_none(), "a restart creates no new key");
    wait_all_completed(&client, &server, &key, &ids, Duration::from_secs(300));
    for id in &ids {
        let result = result(&client, &server, &key, id);
        assert_eq!(result.status(), 200);
        let output: Value = result.json().unwrap();
        assert_eq!(output["video"]["num_frames"], 150);
    }
    assert_one_ok_webhook_each(&client, &server, &receiver, &ids);
}

#[test]
fn requests_survive_kill_9_of_a_remote_worker() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let receiver = Receiver::start();
    let token = "worker-token-for-tests-0123456789";
    let server = Server::start(
        dir.path(),
        &[
            "--allow-private-urls",
            "--workers",
            "0",
            "--worker-token",
            token,
            "--lease-seconds",
            "4",
            "--heartbeat-seconds",
            "1",
        ],
    );
    let key = server.key.clone().unwrap();
    let start_worker = || {
        Command::new(env!("CARGO_BIN_EXE_r2v"))
            .args([
                "worker",
                "--api",
                &server.base,
                "--token",
                token,
                "--x264-preset",
                "ultrafast",
                "--heartbeat-seconds",
                "1",
            ])
            .env("R2V_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let ids: Vec<String> = (0..5)
        .map(|i| {
            submit(
                &client,
                &server,
                &key,
                &small(&format!("Remote {i}.")),
                Some(&receiver.url),
            )
        })
        .collect();
    let mut worker = start_worker();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids
        .iter()
        .any(|id| status(&client, &server, &key, id)["status"] == "IN_PROGRESS")
    {
        assert!(
            Instant::now() < deadline,
            "the worker never claimed a request"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    let mut worker = start_worker();
    wait_all_completed(&client, &server, &key, &ids, Duration::from_secs(180));
    worker.kill().unwrap();
    let _ = worker.wait();
    let attempts: Vec<String> = ids
        .iter()
        .flat_map(|id| {
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
            assert!(s.get("error").is_none(), "{s}");
            s["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["message"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|m| m.contains("(attempt 2)"))
        .collect();
    assert!(
        !attempts.is_empty(),
        "the killed worker's request was retried"
    );
    assert_one_ok_webhook_each(&client, &server, &receiver, &ids);
}

#[test]
fn keys_isolate_requests_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast"]);
    let key_a = server.key.clone().unwrap();
    let created = Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args(["keys", "create", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(created.status.success());
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key_b = created["key"].as_str().unwrap().to_owned();
    assert!(key_b.starts_with(created["id"].as_str().unwrap()));

    let id = submit(&client, &server, &key_a, &small("Mine."), None);
    wait_all_completed(
        &client,
        &server,
        &key_a,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    );
    let root = format!("{}/wan/v2.6/requests/{id}", server.base);
    for (method, url) in [
        ("GET", format!("{root}/status")),
        ("GET", root.clone()),
        ("PUT", format!("{root}/cancel")),
        ("GET", format!("{root}/status/stream")),
    ] {
        let response = client
            .request(method.parse().unwrap(), &url)
            .header("authorization", auth(&key_b))
            .send()
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {url}");
        assert!(response.json::<Value>().unwrap()["detail"].is_string());
    }
    let output: Value = client
        .get(&root)
        .header("authorization", auth(&key_a))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let file_url = output["video"]["url"].as_str().unwrap();
    assert_eq!(
        client.get(file_url).send().unwrap().status(),
        200,
        "the signed URL works without a key"
    );
    // `{base}/files/{exp}.{sig}/{path}`: without the signature segment, and with a forged one.
    let (head, signed) = file_url.split_once("/files/").unwrap();
    let (token, path) = signed.split_once('/').unwrap();
    let unsigned = format!("{head}/files/{path}");
    assert_eq!(
        client
            .get(&unsigned)
            .header("authorization", auth(&key_b))
            .send()
            .unwrap()
            .status(),
        404
    );
    // Change the signature's last character (to one it is not: a fixed '0' matched the real
    // signature one time in sixteen).
    let other = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{head}/files/{}{other}/{path}", &token[..token.len() - 1]);
    assert_ne!(forged, file_url);
    assert_eq!(client.get(&forged).send().unwrap().status(), 404);

    let revoke = Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args(["keys", "revoke", "--data-dir"])
        .arg(dir.path())
        .arg(created["id"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let response = client
        .post(format!("{}/{FLASH}", server.base))
        .header("authorization", auth(&key_b))
        .json(&small("x"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .post(format!("{}/{FLASH}", server.base))
        .json(&small("x"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401, "no key at all");
}

fn raw_request(base: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn bad_input_over_http_gets_clear_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(
        dir.path(),
        &["--workers", "0", "--max-body-bytes", "1048576"],
    );
    let key = server.key.clone().unwrap();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        client
            .post(format!("{}{path}", server.base))
            .header("authorization", auth(&key))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let r = post(
        &format!("/{FLASH}"),
        "application/json",
        b"{\"prompt\": ".to_vec(),
    );
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().unwrap()["detail"][0]["type"],
        "json_invalid"
    );
    let r = post(
        &format!("/{FLASH}"),
        "text/plain",
        b"{\"prompt\": \"x\"}".to_vec(),
    );
    assert_eq!(r.status(), 415);
    assert!(
        r.json::<Value>().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    // Bodies over the limit are refused from their declared length, before they are read:
    // 2 MiB against this server's 1 MiB, then 2 GB. (The client sends only the headers, so the
    // refusal is not raced by a client still writing into a connection the server closed.)
    for length in [2 * 1024 * 1024u64, 2 * 1024 * 1024 * 1024] {
        let (code, text) = raw_request(
            &server.base,
            format!("POST /{FLASH} HTTP/1.1\r\nhost: x\r\nauthorization: Key {key}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n").as_bytes(),
        );
        assert_eq!(code, 413, "{length}: {text}");
        assert!(
            text.contains("\"error_type\":\"request_too_large\""),
            "{text}"
        );
    }
    let r = post(
        "/wan/v2.6/text-to-video",
        "application/json",
        b"{\"prompt\": \"x\"}".to_vec(),
    );
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    let r = client
        .get(format!(
            "{}/wan/v2.6/requests/not-a-request/status",
            server.base
        ))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    for hook in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9/x",
    ] {
        let r = client
            .post(format!(
                "{}/{FLASH}?fal_webhook={}",
                server.base,
                url_encode(hook)
            ))
            .header("authorization", auth(&key))
            .json(&small("x"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 422, "{hook}");
        let detail = &r.json::<Value>().unwrap()["detail"][0];
        assert_eq!(detail["loc"], json!(["query", "fal_webhook"]), "{hook}");
    }
    let r = client
        .post(format!("{}/{FLASH}", server.base))
        .header("authorization", auth(&key))
        .header("x-fal-queue-priority", "urgent")
        .json(&small("x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .get(format!("{}/health", server.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the server keeps serving");
}

#[test]
fn queue_order_positions_start_timeouts_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(dir.path(), &["--workers", "0"]);
    let key = server.key.clone().unwrap();
    let send = |priority: &str, timeout: Option<&str>| {
        let mut request = client
            .post(format!("{}/{FLASH}", server.base))
            .header("authorization", auth(&key))
            .header("x-fal-queue-priority", priority);
        if let Some(t) = timeout {
            request = request.header("x-fal-request-timeout", t);
        }
        let body: Value = request.json(&small("x")).send().unwrap().json().unwrap();
        body["request_id"].as_str().unwrap().to_owned()
    };
    let a = send("normal", None);
    let low = send("low", None);
    let c = send("normal", None);
    let positions: Vec<Value> = [&a, &c, &low]
        .iter()
        .map(|id| status(&client, &server, &key, id)["queue_position"].clone())
        .collect();
    assert_eq!(
        positions,
        vec![json!(0), json!(1), json!(2)],
        "normal before low, then arrival order"
    );
    let cancel = client
        .put(format!("{}/wan/v2.6/requests/{a}/cancel", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), 202);
    assert_eq!(
        status(&client, &server, &key, &c)["queue_position"],
        0,
        "positions are exact after a cancel"
    );

    let timed = send("normal", Some("2"));
    std::thread::sleep(Duration::from_secs(4));
    let s = status(&client, &server, &key, &timed);
    assert_eq!(
        (s["status"].as_str(), s["error_type"].as_str()),
        (Some("COMPLETED"), Some("request_timeout")),
        "{s}"
    );
    let result = client
        .get(format!("{}/wan/v2.6/requests/{timed}", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(result.status(), 504);
    assert_eq!(result.headers()["x-fal-request-timeout-type"], "user");
    assert_eq!(result.headers()["x-fal-request-id"], timed.as_str());

    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("r2v_queue_depth 2"), "{metrics}");
    assert!(
        metrics.contains("r2v_request_failures_total{error_type=\"client_cancelled\"} 1"),
        "{metrics}"
    );
    let openapi: Value = client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn uploads_are_references_without_allow_private_urls() {
    // The server's own file URLs are read from its store, never fetched through the guard.
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast"]);
    let key = server.key.clone().unwrap();
    let initiated: Value = client
        .post(format!(
            "{}/storage/upload/initiate?storage_type=fal-cdn-v3",
            server.base
        ))
        .header("authorization", auth(&key))
        .json(&json!({"content_type": "image/png", "file_name": "face.png"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let png = std::fs::read(repo_root().join("examples/character-warm.png")).unwrap();
    let put = client
        .put(initiated["upload_url"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(png)
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let file_url = initiated["file_url"].as_str().unwrap();
    let mut body = small("Character1 looks up.");
    body["image_urls"] = json!([file_url]);
    let id = submit(&client, &server, &key, &body, None);
    wait_all_completed(
        &client,
        &server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    );
    let s = status(&client, &server, &key, &id);
    assert!(s.get("error").is_none(), "{s}");
    // A loopback URL that is not one of ours is still refused.
    body["image_urls"] = json!([format!("{}/health", server.base)]);
    let id = submit(&client, &server, &key, &body, None);
    wait_all_completed(
        &client,
        &server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    );
    let result: Value = result(&client, &server, &key, &id).json().unwrap();
    assert_eq!(
        result["detail"][0]["type"], "file_download_error",
        "{result}"
    );
}

#[test]
fn a_request_whose_worker_keeps_dying_fails_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let token = "worker-token-for-tests-0123456789";
    let server = Server::start(
        dir.path(),
        &[
            "--workers",
            "0",
            "--worker-token",
            token,
            "--lease-seconds",
            "2",
            "--heartbeat-seconds",
            "1",
            "--max-attempts",
            "1",
        ],
    );
    let key = server.key.clone().unwrap();
    let body = json!({"prompt": "A long one.", "resolution": "1080p", "duration": "10", "enable_audio": false});
    let id = submit(&client, &server, &key, &body, None);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args([
            "worker",
            "--api",
            &server.base,
            "--token",
            token,
            "--heartbeat-seconds",
            "1",
        ])
        .env("R2V_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&client, &server, &key, &id)["status"] != "IN_PROGRESS" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    wait_all_completed(
        &client,
        &server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(30),
    );
    let s = status(&client, &server, &key, &id);
    assert_eq!(s["error_type"], "internal_error", "{s}");
    let result = result(&client, &server, &key, &id);
    assert_eq!(result.status(), 500);
    assert_eq!(result.headers()["x-fal-error-type"], "internal_error");
}

#[test]
fn a_job_for_an_endpoint_no_worker_serves_is_never_run_as_another() {
    // Only a newer server stores such a request (this one refuses unknown endpoints at
    // submit), so the test writes the row into the server's store itself.
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(
        dir.path(),
        &["--max-attempts", "2", "--x264-preset", "ultrafast"],
    );
    let key = server.key.clone().unwrap();
    let owner = key.split(':').next().unwrap().to_owned();
    let id = "0193e5a8-0000-7000-8000-00000000e9d1".to_owned();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = r2v_server::open_store(dir.path(), None).await.unwrap();
        store
            .insert(r2v_store::NewRequest {
                id: id.clone(),
                endpoint: "wan/v9.9/reference-to-video/turbo".to_owned(),
                owner,
                priority: 0,
                input: small("A shot from the future."),
                webhook_url: None,
                store_io: true,
                start_deadline: None,
                output_ttl_seconds: None,
                expires_at: r2v_store::now_ms() + 3_600_000,
                charge: r2v_api::Charge {
                    billable_seconds: 5,
                    cost_microusd: 125_000,
                },
            })
            .await
            .unwrap();
    });
    wait_all_completed(
        &client,
        &server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(60),
    );
    let s: Value = client
        .get(format!(
            "{}/wan/v9.9/requests/{id}/status?logs=1",
            server.base
        ))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["error_type"], "internal_error", "{s}");
    let logs = s["logs"].to_string();
    assert!(
        logs.contains("does not serve the endpoint wan/v9.9/reference-to-video/turbo"),
        "{s}"
    );
    assert!(
        !logs.contains("render"),
        "it was rendered as another preset: {s}"
    );
    let usage: Value = client
        .get(format!("{}/usage", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        usage["total"]["requests"], 0,
        "a failed request is free: {usage}"
    );
}

#[test]
fn the_reaper_deletes_requests_and_files_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(
        dir.path(),
        &["--x264-preset", "ultrafast", "--retention-seconds", "10"],
    );
    let key = server.key.clone().unwrap();
    let id = submit(&client, &server, &key, &small("Short-lived."), None);
    wait_all_completed(
        &client,
        &server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    );
    let output: Value = result(&client, &server, &key, &id).json().unwrap();
    let file_url = output["video"]["url"].as_str().unwrap().to_owned();
    let stored = dir
        .path()
        .join("files/outputs")
        .join(&id)
        .join("output.mp4");
    assert!(
        stored.exists(),
        "the output is stored at {}",
        stored.display()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored.exists() {
        assert!(
            Instant::now() < deadline,
            "the reaper never deleted the output"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(client.get(&file_url).send().unwrap().status(), 404);
    let status = client
        .get(format!("{}/wan/v2.6/requests/{id}/status", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(status.status(), 404, "the request row is gone too");
}
