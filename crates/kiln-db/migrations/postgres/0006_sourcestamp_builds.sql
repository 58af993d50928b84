-- From a source stamp (a change's) to the buildsets, and so the builds, made of it: the change
-- page and the console read this way, and without the index each read scanned every buildset.
CREATE INDEX buildset_sourcestamps_sourcestampid ON buildset_sourcestamps (sourcestampid);
