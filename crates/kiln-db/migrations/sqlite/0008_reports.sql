-- The reporters' outbox: each report a reporter decided to send, stored in the transaction that
-- moves the reporter past the event it was decided from, then delivered at least once.
-- `dedup` names what the report is about (an event and its place among that event's reports, or
-- a worker's absence), so that deciding it twice stores it once.
-- A pending report is taken by one master at a time (`leased_by` until `leased_until`).
CREATE TABLE reports (
    id INTEGER PRIMARY KEY,
    reporter TEXT NOT NULL,
    dedup TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    summary TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    leased_by INTEGER,
    leased_until INTEGER,
    last_error TEXT,
    done_at INTEGER,
    UNIQUE (reporter, dedup)
);
CREATE INDEX reports_queue ON reports (reporter, state, id);
