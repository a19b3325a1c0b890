-- Usage metering (SPEC §4). A request's charge is fixed when it is queued; it is counted
-- in usage_daily by the same transaction that completes it successfully, so a crash can
-- neither lose nor double a charge, and the totals outlive the request rows' retention.
ALTER TABLE requests ADD COLUMN billable_seconds INTEGER;
ALTER TABLE requests ADD COLUMN cost_microusd INTEGER;

CREATE TABLE usage_daily (
    owner TEXT NOT NULL,              -- the API key id
    day TEXT NOT NULL,                -- UTC date of completion, YYYY-MM-DD
    endpoint TEXT NOT NULL,
    requests INTEGER NOT NULL,
    billable_seconds INTEGER NOT NULL,
    cost_microusd INTEGER NOT NULL,
    PRIMARY KEY (owner, day, endpoint)
);
