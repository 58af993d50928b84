-- The durable record of events: every event the update layer publishes (but log appends, whose
-- lines are their own record in logchunks), written in the transaction of the change it describes,
-- in commit order. Consumers that must not miss an event read it from here and remember, in
-- event_consumers, the last one they have handled.
CREATE TABLE event_log (
    id INTEGER PRIMARY KEY,
    event_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    at INTEGER NOT NULL
);

CREATE TABLE event_consumers (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
