//! Usage metering over real HTTP (SPEC §4): every combination of endpoint, resolution and
//! audio is charged its price, failed and cancelled requests are free, the result carries
//! `X-Fal-Billable-Units`, `GET /usage` sums per day and endpoint, `/metrics` counts billable
//! seconds, and the totals are exact across a `kill -9` of the server mid-run.

mod util;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use util::{Server, auth, http, result, status, wait_all_completed};

const STANDARD: &str = "wan/v2.6/reference-to-video";
const FLASH: &str = "wan/v2.6/reference-to-video/flash";

/// SPEC §4, written out independently of the server's code: dollars per second of the
/// standard endpoint at each resolution, and flash's share of it.
fn expected_usd(endpoint: &str, resolution: &str, seconds: f64, audio: bool) -> f64 {
    let per_second = if resolution == "720p" { 0.10 } else { 0.15 };
    let share = match (endpoint, audio) {
        (STANDARD, _) => 1.0,
        (_, true) => 0.5,
        (_, false) => 0.25,
    };
    per_second * seconds * share
}

#[test]
fn usage_is_priced_per_spec_and_exact_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = http();
    let args = [
        "--x264-preset",
        "ultrafast",
        "--workers",
        "2",
        "--blocked-term",
        "forbidden",
    ];
    let mut server = Server::start(dir.path(), &args);
    let key = server.key.clone().unwrap();
    let submit = |server: &Server, endpoint: &str, body: &Value| -> String {
        let response = client
            .post(format!("{}/{endpoint}", server.base))
            .header("authorization", auth(&key))
            .json(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Every combination once; charged ones are (id, endpoint, price).
    let mut charged = Vec::new();
    for endpoint in [FLASH, STANDARD] {
        for resolution in ["720p", "1080p"] {
            for audio in [false, true] {
                let body = json!({"prompt": format!("A {resolution} shot."), "resolution": resolution,
                                  "duration": "5", "enable_audio": audio});
                let id = submit(&server, endpoint, &body);
                charged.push((id, endpoint, expected_usd(endpoint, resolution, 5.0, audio)));
            }
        }
    }
    // Fails at the start of work: its reference cannot be fetched (a loopback address).
    let failed = submit(
        &server,
        FLASH,
        &json!({"prompt": "Character1 waves.", "resolution": "720p",
                "image_urls": ["http://127.0.0.1:9/missing.png"]}),
    );
    // The operator's policy is enforced at submit: refused, never queued, never charged.
    let refused = client
        .post(format!("{}/{FLASH}", server.base))
        .header("authorization", auth(&key))
        .json(&json!({"prompt": "Something forbidden.", "enable_safety_checker": true}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().unwrap();
    assert_eq!(
        refused["detail"][0]["type"], "content_policy_violation",
        "{refused}"
    );
    let cancelled = submit(
        &server,
        STANDARD,
        &json!({"prompt": "Never mind.", "resolution": "720p"}),
    );
    let cancel = client
        .put(format!(
            "{}/wan/v2.6/requests/{cancelled}/cancel",
            server.base
        ))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), 202);

    // kill -9 once the first request has completed, with others rendering or queued.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !charged
        .iter()
        .any(|(id, ..)| status(&client, &server, &key, id)["status"] == "COMPLETED")
    {
        assert!(Instant::now() < deadline, "nothing completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    let server = Server::start(dir.path(), &args);
    let mut all: Vec<String> = charged.iter().map(|(id, ..)| id.clone()).collect();
    all.extend([failed.clone(), cancelled.clone()]);
    wait_all_completed(&client, &server, &key, &all, Duration::from_secs(900));

    for (id, ..) in &charged {
        let response = result(&client, &server, &key, id);
        assert_eq!(response.status(), 200, "{id}");
        assert_eq!(response.headers()["x-fal-billable-units"], "5", "{id}");
    }
    for (id, code) in [(&failed, 422), (&cancelled, 499)] {
        let response = result(&client, &server, &key, id);
        assert_eq!(response.status(), code);
        assert!(response.headers().get("x-fal-billable-units").is_none());
    }

    let usage: Value = client
        .get(format!("{}/usage", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let total_usd: f64 = charged.iter().map(|(_, _, usd)| usd).sum();
    assert_eq!(usage["total"]["requests"], 8, "{usage}");
    assert_eq!(usage["total"]["billable_seconds"], 40, "{usage}");
    let cost = usage["total"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - total_usd).abs() < 1e-9,
        "{cost} != {total_usd}: {usage}"
    );
    for endpoint in [FLASH, STANDARD] {
        let want: f64 = charged
            .iter()
            .filter(|(_, e, _)| *e == endpoint)
            .map(|(_, _, usd)| usd)
            .sum();
        let got: f64 = usage["days"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["endpoint"] == endpoint)
            .map(|d| d["cost_usd"].as_f64().unwrap())
            .sum();
        assert!((got - want).abs() < 1e-9, "{endpoint}: {got} != {want}");
    }
    // Dollars of SPEC §4 with the defaults: 4 flash (0.125 + 0.25 + 0.1875 + 0.375) + 4 standard (0.5 + 0.5 + 0.75 + 0.75).
    assert!((total_usd - 3.4375).abs() < 1e-12);

    // Another key sees none of it; a malformed date is a 400.
    let other = util::r2v(&["keys", "create", "--data-dir", dir.path().to_str().unwrap()]);
    let other = String::from_utf8(other.stdout).unwrap().trim().to_owned();
    let theirs: Value = client
        .get(format!("{}/usage", server.base))
        .header("authorization", auth(&other))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(theirs["total"]["requests"], 0, "{theirs}");
    assert_eq!(theirs["days"], json!([]), "{theirs}");
    let bad = client
        .get(format!("{}/usage?start=yesterday", server.base))
        .header("authorization", auth(&key))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        client
            .get(format!("{}/usage", server.base))
            .send()
            .unwrap()
            .status(),
        401
    );

    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("r2v_billable_seconds_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        counted > 0 && counted <= 40 && counted.is_multiple_of(5),
        "billable seconds completed since the restart: {counted}\n{metrics}"
    );
}
