-- The Postgres schema: the same tables and columns as migrations/sqlite (0001 and 0002),
-- with Postgres types. Times are Unix milliseconds (BIGINT); JSON is stored as TEXT.
CREATE TABLE requests (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- arrival order
    id TEXT NOT NULL UNIQUE,                    -- the public request id (UUID)
    endpoint TEXT NOT NULL,
    owner TEXT NOT NULL,                        -- the API key id that submitted it
    priority BIGINT NOT NULL,                   -- 0 normal, 1 low
    status TEXT NOT NULL,                       -- IN_QUEUE, IN_PROGRESS, COMPLETED
    input TEXT,                                 -- JSON; erased on completion when store_io = 0
    result TEXT,                                -- output JSON on success
    error TEXT,
    error_type TEXT,
    error_status BIGINT,
    error_body TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    worker_id TEXT,
    lease_until BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    webhook_url TEXT,
    webhook_state TEXT NOT NULL DEFAULT 'none', -- none, pending, delivered, failed
    webhook_attempts BIGINT NOT NULL DEFAULT 0,
    webhook_next_at BIGINT,
    webhook_last_error TEXT,
    store_io BIGINT NOT NULL DEFAULT 1,
    start_deadline BIGINT,
    output_ttl_seconds BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    inference_time DOUBLE PRECISION,
    expires_at BIGINT NOT NULL,
    billable_seconds BIGINT,                    -- the charge, fixed at submit (SPEC §4)
    cost_microusd BIGINT
);
CREATE INDEX requests_queue ON requests (status, priority, seq);
CREATE INDEX requests_webhooks ON requests (webhook_state, webhook_next_at);
CREATE INDEX requests_expiry ON requests (expires_at);

CREATE TABLE request_logs (
    request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE files (
    path TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    request_id TEXT,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX files_expiry ON files (expires_at);

CREATE TABLE usage_daily (
    owner TEXT NOT NULL,
    day TEXT NOT NULL,                          -- UTC date of completion, YYYY-MM-DD
    endpoint TEXT NOT NULL,
    requests BIGINT NOT NULL,
    billable_seconds BIGINT NOT NULL,
    cost_microusd BIGINT NOT NULL,
    PRIMARY KEY (owner, day, endpoint)
);
