-- The distributor reads each builder's most urgent pending requests; this index serves that read
-- without scanning every incomplete request.
CREATE INDEX buildrequests_queue ON buildrequests (builderid, complete, priority, submitted_at, id);
