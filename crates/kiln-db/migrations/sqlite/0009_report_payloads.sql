-- A report's payload, kept apart from its row in `reports`.
-- Delivering a report rewrites its row (state, attempts, lease), and SQLite rewrites a whole row to
-- change one column of it: with the payload in the row, recording each delivery rewrote the
-- kilobytes of an HTTP push's build dict, which cost three times what storing the report did.
-- A payload goes with its report when old reports are pruned.
CREATE TABLE report_payloads (
    report_id INTEGER PRIMARY KEY REFERENCES reports (id) ON DELETE CASCADE,
    payload TEXT NOT NULL
);
INSERT INTO report_payloads (report_id, payload) SELECT id, payload FROM reports;
ALTER TABLE reports DROP COLUMN payload;
