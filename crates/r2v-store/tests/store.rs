//! The request store's invariants, as one suite over `&dyn RequestStore`, run against every
//! backend: the queue's order and exact positions, claims that never hand a row out twice,
//! leases (heartbeats, expiry, the attempt limit), cancellation racing completion,
//! exactly-once completion and usage, start deadlines, retention, logs and keys.

use r2v_store::sqlite::SqliteStore;
use r2v_store::{
    ApiKeyRecord, CancelOutcome, Charge, FileRecord, Lease, NewLog, NewRequest, Outcome,
    RequestStore, Status, now_ms, utc_day,
};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use support::postgres::TempPostgres;

mod support {
    pub mod postgres;
}

const FLASH: &str = "wan/v2.6/reference-to-video/flash";
const LEASE_MS: i64 = 60_000;

fn request(id: &str, owner: &str, priority: i64) -> NewRequest {
    NewRequest {
        id: id.to_owned(),
        endpoint: FLASH.to_owned(),
        owner: owner.to_owned(),
        priority,
        input: json!({"prompt": id}),
        webhook_url: None,
        store_io: false,
        start_deadline: None,
        output_ttl_seconds: None,
        expires_at: now_ms() + 3_600_000,
        charge: Charge {
            billable_seconds: 5,
            cost_microusd: 250_000,
        },
    }
}

fn success() -> Outcome {
    Outcome::Success {
        result: json!({"video": {"url": "u"}}),
    }
}

fn failure(kind: &str, status: u16) -> Outcome {
    Outcome::Failure {
        status,
        body: json!({"detail": kind}),
        error: kind.to_owned(),
        error_type: kind.to_owned(),
    }
}

/// Claims until the queue is empty; returns the ids in claim order.
async fn drain(store: &dyn RequestStore, worker: &str) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(row) = store.claim(worker, LEASE_MS).await.unwrap() {
        ids.push(row.id);
    }
    ids
}

async fn queue_order_and_positions(store: &dyn RequestStore) {
    for (id, priority) in [("q-a", 0), ("q-low", 1), ("q-b", 0), ("q-c", 0)] {
        store.insert(request(id, "k1", priority)).await.unwrap();
    }
    let position = |id: &'static str| async move {
        let row = store.get(id).await.unwrap().unwrap();
        store.queue_position(&row).await.unwrap()
    };
    assert_eq!(
        [
            position("q-a").await,
            position("q-b").await,
            position("q-c").await,
            position("q-low").await
        ],
        [0, 1, 2, 3],
        "normal before low, then arrival order"
    );
    assert_eq!(
        store
            .cancel("q-b", failure("client_cancelled", 499))
            .await
            .unwrap(),
        CancelOutcome::CancelledWhileQueued
    );
    assert_eq!(position("q-c").await, 1, "exact after a cancel");
    assert_eq!(
        drain(store, "w").await,
        ["q-a", "q-c", "q-low"],
        "a cancelled request never starts"
    );
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.in_progress), (0, 3));
}

async fn concurrent_claims_never_share_a_row(store: Arc<dyn RequestStore>) {
    for n in 0..40 {
        store
            .insert(request(&format!("c-{n:02}"), "k1", 0))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { drain(store.as_ref(), &format!("w{w}")).await })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 40, "every request claimed");
    assert_eq!(distinct.len(), 40, "none claimed twice");
}

async fn leases_and_exactly_once_completion(store: &dyn RequestStore) {
    store.insert(request("l-1", "k2", 0)).await.unwrap();
    let row = store.claim("w1", LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        (row.id.as_str(), row.attempts, row.status),
        ("l-1", 1, Status::InProgress)
    );
    assert_eq!(
        store.heartbeat("l-1", "w1", LEASE_MS).await.unwrap(),
        Lease::Held {
            cancel_requested: false
        }
    );
    assert_eq!(
        store.heartbeat("l-1", "w2", LEASE_MS).await.unwrap(),
        Lease::Lost
    );
    assert!(
        !store.complete("l-1", "w2", success(), 1.0).await.unwrap(),
        "not the holder"
    );
    assert!(store.complete("l-1", "w1", success(), 1.0).await.unwrap());
    assert!(
        !store.complete("l-1", "w1", success(), 1.0).await.unwrap(),
        "only once"
    );
    assert_eq!(
        store.heartbeat("l-1", "w1", LEASE_MS).await.unwrap(),
        Lease::Lost
    );
    let row = store.get("l-1").await.unwrap().unwrap();
    assert_eq!(row.status, Status::Completed);
    assert_eq!(
        row.input, None,
        "the input is erased without x-fal-store-io"
    );
    assert_eq!(row.charged().map(|c| c.cost_microusd), Some(250_000));
    let usage = store.usage("k2", "2000-01-01", "2999-12-31").await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (
            usage[0].requests,
            usage[0].billable_seconds,
            usage[0].cost_microusd
        ),
        (1, 5, 250_000),
        "counted once"
    );
    assert_eq!(usage[0].day, utc_day(now_ms()));
    assert!(
        store
            .usage("k1", "2000-01-01", "2999-12-31")
            .await
            .unwrap()
            .is_empty(),
        "per owner"
    );
    assert_eq!(
        store
            .cancel("l-1", failure("client_cancelled", 499))
            .await
            .unwrap(),
        CancelOutcome::AlreadyCompleted
    );
    assert_eq!(
        store
            .cancel("nope", failure("client_cancelled", 499))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
}

async fn cancel_racing_completion(store: &dyn RequestStore) {
    store.insert(request("r-1", "k3", 0)).await.unwrap();
    store.claim("w1", LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        store
            .cancel("r-1", failure("client_cancelled", 499))
            .await
            .unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(
        store.heartbeat("r-1", "w1", LEASE_MS).await.unwrap(),
        Lease::Held {
            cancel_requested: true
        }
    );
    // The worker stops and reports the cancel; a late success changes nothing.
    assert!(
        store
            .complete("r-1", "w1", failure("client_cancelled", 499), 0.5)
            .await
            .unwrap()
    );
    assert!(!store.complete("r-1", "w1", success(), 0.6).await.unwrap());
    let row = store.get("r-1").await.unwrap().unwrap();
    assert_eq!(row.error_type.as_deref(), Some("client_cancelled"));
    assert_eq!(row.charged(), None, "a cancelled request is free");
    assert!(
        store
            .usage("k3", "2000-01-01", "2999-12-31")
            .await
            .unwrap()
            .is_empty()
    );
    // A release of a request whose cancel was asked for does not requeue it.
    store.insert(request("r-2", "k3", 0)).await.unwrap();
    store.claim("w1", LEASE_MS).await.unwrap().unwrap();
    store
        .cancel("r-2", failure("client_cancelled", 499))
        .await
        .unwrap();
    assert!(
        store
            .release("r-2", "w1", 5, failure("internal_error", 500))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get("r-2").await.unwrap().unwrap().status,
        Status::Completed
    );
}

async fn expired_leases_retry_then_fail(store: &dyn RequestStore) {
    store.insert(request("e-1", "k4", 0)).await.unwrap();
    let exhausted = || failure("internal_error", 500);
    let timeout = || failure("request_timeout", 504);
    for attempt in 1..=2 {
        let row = store.claim("w1", 1).await.unwrap().unwrap();
        assert_eq!(row.attempts, attempt);
        let later = now_ms() + 1_000;
        let report = store.reap(later, 2, exhausted(), timeout()).await.unwrap();
        if attempt == 1 {
            assert_eq!(
                (report.requeued, report.failed),
                (1, 0),
                "attempt 1 goes back"
            );
            assert_eq!(
                store.get("e-1").await.unwrap().unwrap().status,
                Status::InQueue
            );
        } else {
            assert_eq!(
                (report.requeued, report.failed),
                (0, 1),
                "attempt 2 is the last"
            );
        }
    }
    let row = store.get("e-1").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.error_status),
        (Status::Completed, Some(500))
    );
    assert!(
        !store.complete("e-1", "w1", success(), 1.0).await.unwrap(),
        "the lease is gone"
    );
    // release: back in the queue while attempts remain, failed after.
    store.insert(request("e-2", "k4", 0)).await.unwrap();
    store.claim("w1", LEASE_MS).await.unwrap().unwrap();
    assert!(store.release("e-2", "w1", 2, exhausted()).await.unwrap());
    assert_eq!(
        store.get("e-2").await.unwrap().unwrap().status,
        Status::InQueue
    );
    store.claim("w1", LEASE_MS).await.unwrap().unwrap();
    assert!(
        !store.release("e-2", "w2", 2, exhausted()).await.unwrap(),
        "not the holder"
    );
    assert!(store.release("e-2", "w1", 2, exhausted()).await.unwrap());
    assert_eq!(
        store
            .get("e-2")
            .await
            .unwrap()
            .unwrap()
            .error_type
            .as_deref(),
        Some("internal_error")
    );
    // A node's restart gives back what its workers held.
    store.insert(request("e-3", "k4", 0)).await.unwrap();
    store.claim("local:n1:0", LEASE_MS).await.unwrap().unwrap();
    assert_eq!(store.release_workers("local:n2:").await.unwrap(), 0);
    assert_eq!(store.release_workers("local:n1:").await.unwrap(), 1);
    assert_eq!(
        store.get("e-3").await.unwrap().unwrap().status,
        Status::InQueue
    );
    // A start deadline fails a request that is still queued.
    let mut late = request("e-4", "k4", 0);
    late.start_deadline = Some(now_ms() + 500);
    store.insert(late).await.unwrap();
    let report = store
        .reap(now_ms() + 1_000, 2, exhausted(), timeout())
        .await
        .unwrap();
    assert!(report.start_timeouts >= 1);
    let row = store.get("e-4").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.error_status),
        (Status::Completed, Some(504))
    );
}

async fn logs_keys_files_and_retention(store: &dyn RequestStore) {
    store.insert(request("t-1", "k5", 0)).await.unwrap();
    let line = |m: &str| NewLog {
        level: "INFO".into(),
        message: m.into(),
        timestamp: "2026-11-29T00:00:00".into(),
    };
    store
        .append_logs("t-1", &[line("a"), line("b")])
        .await
        .unwrap();
    store.append_logs("t-1", &[line("c")]).await.unwrap();
    let after: Vec<String> = store
        .logs_after("t-1", 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line.message)
        .collect();
    assert_eq!(after, ["b", "c"]);

    store
        .insert_key(ApiKeyRecord {
            id: "k5".into(),
            secret_sha256: "00".into(),
            name: "test".into(),
            created_at: now_ms(),
            revoked_at: None,
        })
        .await
        .unwrap();
    assert!(store.revoke_key("k5", now_ms()).await.unwrap());
    assert!(
        !store.revoke_key("k5", now_ms()).await.unwrap(),
        "already revoked"
    );
    assert!(
        store
            .get_key("k5")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    let file = |path: &str, expires_at| FileRecord {
        path: path.into(),
        owner: "k5".into(),
        request_id: None,
        content_type: "image/png".into(),
        size: 1,
        created_at: now_ms(),
        expires_at,
    };
    store
        .insert_file(file("uploads/old", now_ms() - 1))
        .await
        .unwrap();
    store
        .insert_file(file("uploads/new", now_ms() + 3_600_000))
        .await
        .unwrap();
    let mut old = request("t-old", "k5", 0);
    old.expires_at = now_ms() - 1;
    store.insert(old).await.unwrap();
    let mut unfinished = request("t-queued", "k5", 0);
    unfinished.expires_at = now_ms() - 1;
    store.insert(unfinished).await.unwrap();
    store
        .cancel("t-old", failure("client_cancelled", 499))
        .await
        .unwrap();
    let deleted = store.delete_expired(now_ms()).await.unwrap();
    assert!(deleted.contains(&"uploads/old".to_owned()), "{deleted:?}");
    assert!(!deleted.contains(&"uploads/new".to_owned()));
    assert!(store.get_file("uploads/old").await.unwrap().is_none());
    assert!(store.get_file("uploads/new").await.unwrap().is_some());
    assert!(
        store.get("t-old").await.unwrap().is_none(),
        "the request is gone"
    );
    assert!(
        store.get("t-queued").await.unwrap().is_some(),
        "an unfinished one stays"
    );
    assert!(
        store.logs_after("t-1", 0).await.unwrap().len() == 3,
        "others stay"
    );
}

async fn each_webhook_goes_to_one_dispatcher(store: Arc<dyn RequestStore>) {
    for n in 0..20 {
        let mut new = request(&format!("h-{n:02}"), "k6", 0);
        new.webhook_url = Some("https://example.com/hook".into());
        store.insert(new).await.unwrap();
    }
    for id in drain(store.as_ref(), "w").await {
        assert!(store.complete(&id, "w", success(), 1.0).await.unwrap());
    }
    let now = now_ms() + 10;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = store.claim_webhooks(now, 3, 60_000).await.unwrap();
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.into_iter().map(|r| r.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (20, 20),
        "each delivery claimed once"
    );
    // A dispatcher that died leaves its deliveries due again after the lease; recorded ones
    // are done.
    store
        .webhook_attempted("h-00", true, None, None)
        .await
        .unwrap();
    store
        .webhook_attempted("h-01", false, Some("503"), Some(now + 120_000))
        .await
        .unwrap();
    let again = store
        .claim_webhooks(now + 61_000, 100, 60_000)
        .await
        .unwrap();
    let again: HashSet<String> = again.into_iter().map(|r| r.id).collect();
    assert_eq!(again.len(), 18, "{again:?}");
    assert!(!again.contains("h-00") && !again.contains("h-01"));
}

async fn the_first_secret_stored_wins(store: &dyn RequestStore) {
    let first = store.shared_secret("url_hmac", &[1, 2, 3]).await.unwrap();
    let second = store.shared_secret("url_hmac", &[9, 9, 9]).await.unwrap();
    assert_eq!(
        (first.as_slice(), second.as_slice()),
        (&[1u8, 2, 3][..], &[1u8, 2, 3][..])
    );
    assert_eq!(store.shared_secret("other", &[7]).await.unwrap(), [7]);
}

/// The whole suite against one backend.
async fn suite(store: Arc<dyn RequestStore>) {
    queue_order_and_positions(store.as_ref()).await;
    drain(store.as_ref(), "sweeper").await;
    concurrent_claims_never_share_a_row(store.clone()).await;
    leases_and_exactly_once_completion(store.as_ref()).await;
    cancel_racing_completion(store.as_ref()).await;
    expired_leases_retry_then_fail(store.as_ref()).await;
    logs_keys_files_and_retention(store.as_ref()).await;
    each_webhook_goes_to_one_dispatcher(store.clone()).await;
    the_first_secret_stored_wins(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_keeps_the_store_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("r2v.db")).await.unwrap();
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_the_store_invariants() {
    let server = TempPostgres::start();
    let store = r2v_store::postgres::PostgresStore::open(&server.url)
        .await
        .unwrap();
    suite(Arc::new(store)).await;
}
