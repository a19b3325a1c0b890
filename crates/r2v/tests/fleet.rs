//! Two `r2v serve` nodes on one Postgres database (issue #13's first step): every call of a
//! request may go to either node (submit on one; status, stream and result on the other),
//! a node killed with `kill -9` loses nothing (the other node's reaper requeues what its
//! workers held, and the other node's workers finish it), each webhook is delivered once
//! though both nodes dispatch, and usage stays exact.
//!
//! The nodes share a data directory (signing keys and files) on this host; S3 and shared
//! secrets for nodes on several hosts are the rest of issue #13.

mod util;

#[path = "../../r2v-store/tests/support/postgres.rs"]
mod postgres;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};
use util::{FLASH, Receiver, Server, assert_one_ok_webhook_each, auth, http, small, status};

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
