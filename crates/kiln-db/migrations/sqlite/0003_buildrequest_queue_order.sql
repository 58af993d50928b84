-- The distributor reads a builder's queue highest priority first, then oldest first. An index in
-- that exact order (priority descending, the rest ascending) lets the read stop after the first
-- few rows instead of sorting every pending request of the builder.
DROP INDEX buildrequests_queue;
CREATE INDEX buildrequests_queue ON buildrequests (builderid, complete, priority DESC, submitted_at, id);
