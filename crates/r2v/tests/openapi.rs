//! The server against its own description: every route but the documented public ones
//! refuses a caller without a key, and schemathesis (pinned, from PyPI) finds no drift
//! between `/openapi.json` and what the server accepts and answers.

mod util;

use serde_json::Value;
use std::process::Command;
use util::{Server, auth, http, repo_root};

/// A path with its `{params}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_needs_a_key_but_the_public_ones() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let server = Server::start(dir.path(), &["--workers", "0"]);
    let document: Value = client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let send = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        client
            .request(method, format!("{}{path}", server.base))
            .header("content-type", "application/json")
            .body("{\"prompt\": \"x\"}")
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let public = operation["security"] == serde_json::json!([{}]);
            let code = send(method, &concrete(path));
            if public {
                assert_ne!(code, 401, "{method} {path} is documented as public");
            } else {
                assert_eq!(code, 401, "{method} {path} answered a caller without a key");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8,
        "only {checked} documented operations need a key"
    );
    // Routes the document leaves out (the clients' storage flows, PROTOCOL §5): each takes
    // a key or a signed URL, never nothing.
    for (method, path, code) in [
        ("post", "/storage/upload/initiate", 401),
        ("post", "/storage/upload/initiate-multipart", 401),
        ("post", "/storage/auth/token", 401),
        ("post", "/files/upload", 401),
        ("post", "/files/upload/multipart", 401),
        ("put", "/files/1.ab/uploads/x/y/multipart/z/1", 401),
        ("post", "/files/1.ab/uploads/x/y/multipart/z/complete", 401),
        ("post", "/someone/else", 401),
        ("post", "/someone/else/entirely", 401),
        ("get", "/files/1.ab/uploads/x/y", 404),
        ("put", "/storage/upload/put/x/y", 400),
        ("put", "/storage/upload/multipart/x/y/1", 400),
        ("post", "/storage/upload/multipart/x/y/complete", 400),
        ("post", "/worker/v1/claim", 404),
    ] {
        assert_eq!(send(method, path), code, "{method} {path}");
    }
}

#[test]
fn schemathesis_finds_no_drift() {
    let tools = repo_root().join("tests/schemathesis");
    let st = tools.join(".venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed at {}; scripts/test.sh installs it",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--workers", "0", "--allow-private-urls"]);
    let key = server.key.clone().unwrap();
    let reports = dir.path().join("reports");
    let output = Command::new(&st)
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(tools.join("schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", server.base)])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .args(["--continue-on-failure", "--generation-database", "none"])
        .args(["--header", &format!("Authorization: {}", auth(&key))])
        .args(["--report", "junit", "--report-dir"])
        .arg(&reports)
        .env("NO_COLOR", "1")
        .output()
        .expect("running schemathesis");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found drift (see above)"
    );
    assert!(text.contains("passed"), "schemathesis ran nothing");
}
