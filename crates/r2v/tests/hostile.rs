//! `r2v serve` against hostile clients, over real HTTP on loopback: bodies read only after
//! authentication and only up to a route's limit, 422 bodies that stay small, unknown
//! fields that are not stored, every IPv6 form of a private IPv4 address refused by the
//! SSRF guard, uploaded files that cannot run as pages, slow connections that are closed,
//! and the memory of a submit with five large references.

mod util;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use util::{FLASH, Server, auth, http, result, small, wait_all_completed};

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the peer closes or the read times out; the status code (0 without one).
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&bytes);
        // One whole response with a length is enough; the connection may stay open.
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|n| rest.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Waits for a request to finish and returns its result body.
fn result_of(client: &Client, server: &Server, key: &str, id: &str) -> Value {
    wait_all_completed(
        client,
        server,
        key,
        &[id.to_owned()],
        Duration::from_secs(300),
    );
    result(client, server, key, id).json().unwrap()
}

fn submit(client: &Client, server: &Server, key: &str, body: &[u8]) -> reqwest::blocking::Response {
    client
        .post(format!("{}/{FLASH}", server.base))
        .header("authorization", auth(key))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .unwrap()
}

#[test]
fn worker_routes_answer_before_reading_a_body() {
    let dir = tempfile::tempdir().unwrap();
    // No worker token: the worker API is off, and answers 404 without reading the body.
    let server = Server::start(dir.path(), &["--workers", "0"]);
    for path in [
        "/worker/v1/claim",
        "/worker/v1/requests/x/heartbeat",
        "/worker/v1/requests/x/complete",
    ] {
        let mut stream = connect(&server);
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let (code, text) = read_response(&mut stream);
        assert_eq!(code, 404, "{path} before its 1 GiB body: {text}");
    }
    // A body that is really sent (256 MiB, chunked, so no declared length to refuse) is
    // not buffered: the answer comes first and the memory stays flat.
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /worker/v1/claim HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..256 {
            if writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || writer.write_all(&chunk).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (code, _) = read_response(&mut stream);
    assert_eq!(code, 404);
    drop(stream);
    sender.join().unwrap();
    let peak = server.peak_rss_mib();
    assert!(peak < 128.0, "peak RSS {peak:.0} MiB");
    drop(server);

    // With a token, a caller without it gets 401, also before its body.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--workers", "0", "--worker-token", "sesame-sesame-sesame"],
    );
    for auth in ["", "authorization: Bearer sesame-sesame-wrong\r\n"] {
        let mut stream = connect(&server);
        let head = format!(
            "POST /worker/v1/claim HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 1073741824\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let (code, text) = read_response(&mut stream);
        assert_eq!(code, 401, "{auth:?}: {text}");
    }
    // And a worker with the token gets a limit that fits a claim: 413 for 1 GiB.
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /worker/v1/claim HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sesame-sesame-sesame\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n")
        .unwrap();
    let (code, text) = read_response(&mut stream);
    assert_eq!(code, 413, "{text}");
    let claimed = http()
        .post(format!("{}/worker/v1/claim", server.base))
        .header("authorization", "Bearer sesame-sesame-sesame")
        .json(&json!({"worker_id": "w1"}))
        .send()
        .unwrap();
    assert_eq!(claimed.status(), 204, "an empty queue");
}

#[test]
fn errors_for_huge_lists_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--workers", "0"]);
    let key = server.key.clone().unwrap();
    let client = http();
    // 1 000 000 integers where at most 5 URLs may be.
    let mut body = String::from("{\"prompt\":\"Character1 waves\",\"image_urls\":[");
    for i in 0..1_000_000 {
        if i > 0 {
            body.push(',');
        }
        body.push('1');
    }
    body.push_str("],\"video_urls\":[");
    body.push_str(&vec!["2"; 100_000].join(","));
    body.push_str("],\"seed\":[");
    body.push_str(&vec!["\"x\""; 100_000].join(","));
    body.push_str("]}");
    let started = Instant::now();
    let response = submit(&client, &server, &key, body.as_bytes());
    assert_eq!(response.status(), 422);
    let text = response.text().unwrap();
    assert!(text.len() < 16 * 1024, "a {} byte 422", text.len());
    let detail: Value = serde_json::from_str(&text).unwrap();
    let detail = detail["detail"].as_array().unwrap();
    let image = detail
        .iter()
        .find(|d| d["loc"] == json!(["body", "image_urls"]))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(image["type"], "sequence_too_long");
    assert_eq!(image["ctx"]["actual_length"], 1_000_000);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let peak = server.peak_rss_mib();
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");

    // Many wrong fields at once: the list of errors is capped, and says so.
    let mut wrong = serde_json::Map::new();
    wrong.insert("prompt".into(), json!(1));
    for field in [
        "negative_prompt",
        "resolution",
        "duration",
        "enable_audio",
        "seed",
        "multi_shots",
        "enable_prompt_expansion",
        "enable_safety_checker",
        "aspect_ratio",
    ] {
        wrong.insert(field.into(), json!({"nested": [1, 2, 3]}));
    }
    wrong.insert("image_urls".into(), json!([1, 2, 3, 4, 5]));
    wrong.insert("video_urls".into(), json!([1, 2, 3]));
    let response = submit(
        &client,
        &server,
        &key,
        &serde_json::to_vec(&Value::Object(wrong)).unwrap(),
    );
    assert_eq!(response.status(), 422);
    let detail: Value = response.json().unwrap();
    let n = detail["detail"].as_array().unwrap().len();
    assert!((10..=32).contains(&n), "{n} errors: {detail}");
}

/// The bytes of the server's SQLite database and its journals.
fn database_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("r2v.db"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn unknown_fields_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--workers", "0"]);
    let key = server.key.clone().unwrap();
    let client = http();
    let before = database_bytes(dir.path());
    let mut body = small("A lighthouse at dusk");
    body["junk"] = json!("x".repeat(50 * 1024 * 1024));
    body["more_junk"] = json!({"deep": [[[[1]]]]});
    let response = submit(&client, &server, &key, &serde_json::to_vec(&body).unwrap());
    assert_eq!(
        response.status(),
        200,
        "unknown fields are ignored, as before: {}",
        response.text().unwrap()
    );
    let after = database_bytes(dir.path());
    assert!(
        after < before + 1024 * 1024,
        "the database grew from {before} to {after} bytes"
    );
}

#[test]
fn ipv6_forms_of_private_ipv4_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast"]);
    let key = server.key.clone().unwrap();
    let client = http();
    // Each embeds loopback, a private or a link-local IPv4 address, or is not global.
    let forms = [
        "[::127.0.0.1]",                 // IPv4-compatible
        "[::ffff:127.0.0.1]",            // IPv4-mapped
        "[::ffff:0:10.0.0.1]",           // SIIT
        "[64:ff9b::7f00:1]",             // NAT64, well-known prefix
        "[64:ff9b::a9fe:a9fe]",          // NAT64 of 169.254.169.254
        "[64:ff9b:1::7f00:1]",           // NAT64, local-use prefix
        "[2002:7f00:1::1]",              // 6to4
        "[2001:0:4136:e378::80ff:fffe]", // Teredo, client 127.0.0.1
    ];
    for form in forms {
        let hook = format!("http://{form}:9/hook");
        let url = format!(
            "{}/{FLASH}?fal_webhook={}",
            server.base,
            hook.replace('[', "%5B")
                .replace(']', "%5D")
                .replace(':', "%3A")
                .replace('/', "%2F")
        );
        let r = client
            .post(url)
            .header("authorization", auth(&key))
            .json(&small("x"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 422, "{form}");
        let detail = &r.json::<Value>().unwrap()["detail"][0];
        assert_eq!(detail["loc"], json!(["query", "fal_webhook"]), "{form}");
    }
    // As references: refused by the guard (which says so) rather than tried. At most five
    // references a request: the images, then the videos.
    let urls: Vec<String> = forms
        .iter()
        .map(|form| format!("http://{form}:9/reference"))
        .collect();
    for (field, urls) in [("image_urls", &urls[..5]), ("video_urls", &urls[5..])] {
        let mut body = small("Character1 and Character2 wave");
        body[field] = json!(urls);
        let submitted = submit(&client, &server, &key, &serde_json::to_vec(&body).unwrap())
            .json::<Value>()
            .unwrap();
        let id = submitted["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{submitted}"))
            .to_owned();
        let result = result_of(&client, &server, &key, &id);
        let detail = result["detail"]
            .as_array()
            .unwrap_or_else(|| panic!("{result}"));
        assert_eq!(detail.len(), urls.len(), "{result}");
        for d in detail {
            assert_eq!(d["type"], "file_download_error", "{d}");
            let msg = d["msg"].as_str().unwrap();
            assert!(msg.contains("does not fetch from"), "{msg}");
        }
    }
}

#[test]
fn uploaded_files_cannot_run_as_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--workers", "0"]);
    let key = server.key.clone().unwrap();
    let client = http();
    let upload = |content_type: &str, name: &str, bytes: &[u8]| -> String {
        let initiated: Value = client
            .post(format!(
                "{}/storage/upload/initiate?storage_type=fal-cdn-v3",
                server.base
            ))
            .header("authorization", auth(&key))
            .json(&json!({"content_type": content_type, "file_name": name}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let put = client
            .put(initiated["upload_url"].as_str().unwrap())
            .header("content-type", content_type)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(put.status(), 200);
        initiated["file_url"].as_str().unwrap().to_owned()
    };
    let page = b"<html><script>fetch('/x?k='+localStorage.key)</script></html>";
    for (content_type, name, inline) in [
        ("text/html", "page.html", false),
        ("image/svg+xml", "icon.svg", false),
        ("application/javascript", "app.js", false),
        ("text/plain", "notes.txt", false),
        ("image/png", "face.png", true),
        ("video/mp4", "clip.mp4", true),
        ("audio/mpeg", "sound.mp3", true),
    ] {
        let url = upload(content_type, name, page);
        let got = client.get(&url).send().unwrap();
        assert_eq!(got.status(), 200, "{content_type}");
        let headers = got.headers();
        assert_eq!(
            headers["x-content-type-options"], "nosniff",
            "{content_type}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("sandbox"), "{content_type}: {csp}");
        let disposition = headers
            .get("content-disposition")
            .map(|v| v.to_str().unwrap().to_owned());
        if inline {
            assert_eq!(disposition, None, "{content_type}");
        } else {
            let disposition = disposition.unwrap_or_default();
            assert!(
                disposition.starts_with("attachment"),
                "{content_type}: {disposition:?}"
            );
        }
    }
}

#[test]
fn slow_connections_are_closed_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--workers",
            "0",
            "--header-timeout-seconds",
            "1",
            "--body-idle-timeout-seconds",
            "1",
            "--max-connections",
            "16",
        ],
    );
    let key = server.key.clone().unwrap();
    // Silent, and dribbling headers: closed once the header time is up.
    for opening in [&b""[..], b"GET /health HTTP/1.1\r\nhost: x\r\n"] {
        let mut stream = connect(&server);
        stream.write_all(opening).unwrap();
        let started = Instant::now();
        let (_, text) = read_response(&mut stream);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(8),
            "{:?} still open after {waited:?}: {text}",
            String::from_utf8_lossy(opening)
        );
        assert!(!text.contains("200 OK"), "{text}");
    }
    // An idle keep-alive connection after a request: closed too.
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let (code, _) = read_response(&mut stream);
    assert_eq!(code, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(8));
    // A body that stops: 408.
    let mut stream = connect(&server);
    let head = format!(
        "POST /{FLASH} HTTP/1.1\r\nhost: x\r\nauthorization: Key {key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"prompt\":"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (code, text) = read_response(&mut stream);
    assert_eq!(code, 408, "{text}");
    // Many idle connections hold at most the cap of descriptors (plus one the process may
    // open for itself meanwhile, such as a pooled SQLite connection: CI once counted 20 + 17),
    // and the server still answers once they time out.
    let baseline = server.open_fds();
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(&server)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let open = server.open_fds();
    assert!(
        open <= baseline + 16 + 1,
        "{open} descriptors open (from {baseline}) with 200 idle connections"
    );
    let health = http()
        .get(format!("{}/health", server.base))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(idle);
}

/// A `w`×`h` 16-bit RGBA PNG, opaque, as a data URI.
fn rgba16_png_data_uri(w: u32, h: u32) -> String {
    let image = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(
        w,
        h,
        image::Rgba([30000, 20000, 10000, 65535]),
    );
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba16(image)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png.into_inner())
    )
}

#[test]
fn five_large_references_have_a_bounded_peak() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast"]);
    let key = server.key.clone().unwrap();
    let client = http();
    let uri = rgba16_png_data_uri(5000, 5000);
    let mut body = small("Character1 Character2 Character3 Character4 Character5 dance");
    body["image_urls"] = json!(vec![uri; 5]);
    let id = submit(&client, &server, &key, &serde_json::to_vec(&body).unwrap())
        .json::<Value>()
        .unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let result = result_of(&client, &server, &key, &id);
    assert!(result["video"]["url"].is_string(), "{result}");
    // Five decoded 16-bit images would be 1 GB; one at a time, plus the five RGB copies a
    // render keeps (75 MB each), stays well under that.
    let peak = server.peak_rss_mib();
    eprintln!("peak RSS with five 5000x5000 16-bit references: {peak:.0} MiB");
    assert!(peak < 900.0, "peak RSS {peak:.0} MiB");
}
