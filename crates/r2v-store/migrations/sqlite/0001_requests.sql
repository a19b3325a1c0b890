-- The request row is the job: lifecycle, queue order, lease, result, webhook state.
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,      -- arrival order
    id TEXT NOT NULL UNIQUE,                    -- the public request id (UUID)
    endpoint TEXT NOT NULL,
    owner TEXT NOT NULL,                        -- the API key id that submitted it
    priority INTEGER NOT NULL,                  -- 0 normal, 1 low
    status TEXT NOT NULL,                       -- IN_QUEUE, IN_PROGRESS, COMPLETED
    input TEXT,                                 -- JSON; erased on completion when store_io = 0
    result TEXT,                                -- output JSON on success
    error TEXT,
    error_type TEXT,
    error_status INTEGER,
    error_body TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    lease_until INTEGER,                        -- unix ms
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    webhook_url TEXT,
    webhook_state TEXT NOT NULL DEFAULT 'none', -- none, pending, delivered, failed
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at INTEGER,
    webhook_last_error TEXT,
    store_io INTEGER NOT NULL DEFAULT 1,
    start_deadline INTEGER,                     -- unix ms; unset = none
    output_ttl_seconds INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    inference_time REAL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX requests_queue ON requests (status, priority, seq);
CREATE INDEX requests_webhooks ON requests (webhook_state, webhook_next_at);
CREATE INDEX requests_expiry ON requests (expires_at);

CREATE TABLE request_logs (
    request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Every stored blob (uploads and outputs), for ownership and the retention reaper.
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    request_id TEXT,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX files_expiry ON files (expires_at);
