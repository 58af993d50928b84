-- The initial schema, following Buildbot's table families. Times are integer epoch seconds and
-- booleans are 0/1 integers, as in Buildbot. Names that need a unique index get a `*_hash` column
-- (SHA-1 of the name) as Buildbot does, so TEXT columns stay unbounded.

CREATE TABLE masters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE,
    active INTEGER NOT NULL DEFAULT 0,
    last_active INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE,
    slug TEXT NOT NULL DEFAULT '',
    description TEXT,
    description_format TEXT,
    description_html TEXT
);

CREATE TABLE builders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE,
    description TEXT,
    description_format TEXT,
    description_html TEXT,
    projectid INTEGER REFERENCES projects (id) ON DELETE SET NULL
);

CREATE TABLE builder_masters (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    masterid INTEGER NOT NULL REFERENCES masters (id),
    UNIQUE (builderid, masterid)
);

CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE
);

CREATE TABLE builders_tags (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    tagid INTEGER NOT NULL REFERENCES tags (id),
    UNIQUE (builderid, tagid)
);

CREATE TABLE workers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    info TEXT NOT NULL DEFAULT '{}',
    paused INTEGER NOT NULL DEFAULT 0,
    pause_reason TEXT,
    graceful INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE configured_workers (
    id INTEGER PRIMARY KEY,
    buildermasterid INTEGER NOT NULL REFERENCES builder_masters (id),
    workerid INTEGER NOT NULL REFERENCES workers (id),
    UNIQUE (buildermasterid, workerid)
);

CREATE TABLE connected_workers (
    id INTEGER PRIMARY KEY,
    masterid INTEGER NOT NULL REFERENCES masters (id),
    workerid INTEGER NOT NULL REFERENCES workers (id),
    UNIQUE (masterid, workerid)
);

CREATE TABLE patches (
    id INTEGER PRIMARY KEY,
    patchlevel INTEGER NOT NULL,
    patch_base64 TEXT NOT NULL,
    patch_author TEXT,
    patch_comment TEXT,
    subdir TEXT
);

CREATE TABLE sourcestamps (
    id INTEGER PRIMARY KEY,
    ss_hash TEXT NOT NULL UNIQUE,
    branch TEXT,
    revision TEXT,
    patchid INTEGER REFERENCES patches (id),
    repository TEXT NOT NULL DEFAULT '',
    codebase TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE changes (
    changeid INTEGER PRIMARY KEY,
    author TEXT NOT NULL,
    committer TEXT,
    comments TEXT NOT NULL,
    branch TEXT,
    revision TEXT,
    revlink TEXT,
    when_timestamp INTEGER NOT NULL,
    category TEXT,
    repository TEXT NOT NULL DEFAULT '',
    codebase TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    sourcestampid INTEGER NOT NULL REFERENCES sourcestamps (id),
    parent_changeids INTEGER REFERENCES changes (changeid)
);
CREATE INDEX changes_branch ON changes (branch);
CREATE INDEX changes_revision ON changes (revision);
CREATE INDEX changes_author ON changes (author);
CREATE INDEX changes_category ON changes (category);
CREATE INDEX changes_when_timestamp ON changes (when_timestamp);
CREATE INDEX changes_sourcestampid ON changes (sourcestampid);

CREATE TABLE change_files (
    changeid INTEGER NOT NULL REFERENCES changes (changeid),
    filename TEXT NOT NULL
);
CREATE INDEX change_files_changeid ON change_files (changeid);

CREATE TABLE change_properties (
    changeid INTEGER NOT NULL REFERENCES changes (changeid),
    property_name TEXT NOT NULL,
    property_value TEXT NOT NULL
);
CREATE INDEX change_properties_changeid ON change_properties (changeid);

CREATE TABLE users (
    uid INTEGER PRIMARY KEY,
    identifier TEXT NOT NULL UNIQUE,
    bb_username TEXT UNIQUE,
    bb_password TEXT
);

CREATE TABLE users_info (
    uid INTEGER NOT NULL REFERENCES users (uid),
    attr_type TEXT NOT NULL,
    attr_data TEXT NOT NULL,
    UNIQUE (uid, attr_type)
);

CREATE TABLE change_users (
    changeid INTEGER NOT NULL REFERENCES changes (changeid),
    uid INTEGER NOT NULL REFERENCES users (uid)
);
CREATE INDEX change_users_changeid ON change_users (changeid);

CREATE TABLE changesources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE
);

CREATE TABLE changesource_masters (
    changesourceid INTEGER PRIMARY KEY REFERENCES changesources (id),
    masterid INTEGER NOT NULL REFERENCES masters (id)
);

CREATE TABLE schedulers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_hash TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE scheduler_masters (
    schedulerid INTEGER PRIMARY KEY REFERENCES schedulers (id),
    masterid INTEGER NOT NULL REFERENCES masters (id)
);

CREATE TABLE scheduler_changes (
    schedulerid INTEGER NOT NULL REFERENCES schedulers (id),
    changeid INTEGER NOT NULL REFERENCES changes (changeid),
    important INTEGER NOT NULL,
    UNIQUE (schedulerid, changeid)
);

CREATE TABLE buildsets (
    id INTEGER PRIMARY KEY,
    external_idstring TEXT,
    reason TEXT,
    submitted_at INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    complete_at INTEGER,
    results INTEGER,
    parent_buildid INTEGER,
    parent_relationship TEXT,
    rebuilt_buildid INTEGER
);
CREATE INDEX buildsets_complete ON buildsets (complete);
CREATE INDEX buildsets_submitted_at ON buildsets (submitted_at);

CREATE TABLE buildset_properties (
    buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
    property_name TEXT NOT NULL,
    property_value TEXT NOT NULL
);
CREATE INDEX buildset_properties_buildsetid ON buildset_properties (buildsetid);

CREATE TABLE buildset_sourcestamps (
    id INTEGER PRIMARY KEY,
    buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
    sourcestampid INTEGER NOT NULL REFERENCES sourcestamps (id),
    UNIQUE (buildsetid, sourcestampid)
);

CREATE TABLE buildrequests (
    id INTEGER PRIMARY KEY,
    buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
    builderid INTEGER NOT NULL REFERENCES builders (id),
    priority INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    results INTEGER,
    submitted_at INTEGER NOT NULL,
    complete_at INTEGER,
    waited_for INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX buildrequests_buildsetid ON buildrequests (buildsetid);
CREATE INDEX buildrequests_builderid ON buildrequests (builderid);
CREATE INDEX buildrequests_complete ON buildrequests (complete);

CREATE TABLE buildrequest_claims (
    brid INTEGER NOT NULL UNIQUE REFERENCES buildrequests (id),
    masterid INTEGER NOT NULL REFERENCES masters (id),
    claimed_at INTEGER NOT NULL
);

CREATE TABLE builds (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    buildrequestid INTEGER NOT NULL REFERENCES buildrequests (id),
    workerid INTEGER REFERENCES workers (id) ON DELETE SET NULL,
    masterid INTEGER NOT NULL REFERENCES masters (id),
    started_at INTEGER NOT NULL,
    complete_at INTEGER,
    locks_duration_s INTEGER NOT NULL DEFAULT 0,
    state_string TEXT NOT NULL DEFAULT '',
    results INTEGER,
    UNIQUE (builderid, number)
);
CREATE INDEX builds_buildrequestid ON builds (buildrequestid);
CREATE INDEX builds_workerid ON builds (workerid);
CREATE INDEX builds_complete_at ON builds (complete_at);

CREATE TABLE build_properties (
    buildid INTEGER NOT NULL REFERENCES builds (id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (buildid, name)
);

CREATE TABLE build_data (
    id INTEGER PRIMARY KEY,
    buildid INTEGER NOT NULL REFERENCES builds (id),
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    length INTEGER NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (buildid, name)
);

CREATE TABLE steps (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    buildid INTEGER NOT NULL REFERENCES builds (id),
    started_at INTEGER,
    locks_acquired_at INTEGER,
    complete_at INTEGER,
    state_string TEXT NOT NULL DEFAULT '',
    results INTEGER,
    urls_json TEXT NOT NULL DEFAULT '[]',
    hidden INTEGER NOT NULL DEFAULT 0,
    UNIQUE (buildid, number),
    UNIQUE (buildid, name)
);

CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    stepid INTEGER NOT NULL REFERENCES steps (id),
    complete INTEGER NOT NULL DEFAULT 0,
    num_lines INTEGER NOT NULL DEFAULT 0,
    type TEXT NOT NULL,
    UNIQUE (stepid, slug)
);

CREATE TABLE logchunks (
    logid INTEGER NOT NULL REFERENCES logs (id),
    first_line INTEGER NOT NULL,
    last_line INTEGER NOT NULL,
    content BLOB NOT NULL,
    compressed INTEGER NOT NULL
);
CREATE INDEX logchunks_first_line ON logchunks (logid, first_line);
CREATE INDEX logchunks_last_line ON logchunks (logid, last_line);

CREATE TABLE objects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    UNIQUE (name, class_name)
);

CREATE TABLE object_state (
    objectid INTEGER NOT NULL REFERENCES objects (id),
    name TEXT NOT NULL,
    value_json TEXT NOT NULL,
    UNIQUE (objectid, name)
);

CREATE TABLE test_names (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    name TEXT NOT NULL,
    UNIQUE (builderid, name)
);

CREATE TABLE test_code_paths (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    path TEXT NOT NULL,
    UNIQUE (builderid, path)
);

CREATE TABLE test_result_sets (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    buildid INTEGER NOT NULL REFERENCES builds (id),
    stepid INTEGER NOT NULL REFERENCES steps (id),
    description TEXT,
    category TEXT NOT NULL,
    value_unit TEXT NOT NULL,
    tests_passed INTEGER,
    tests_failed INTEGER,
    complete INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE test_results (
    id INTEGER PRIMARY KEY,
    builderid INTEGER NOT NULL REFERENCES builders (id),
    test_result_setid INTEGER NOT NULL REFERENCES test_result_sets (id),
    test_nameid INTEGER REFERENCES test_names (id),
    test_code_pathid INTEGER REFERENCES test_code_paths (id),
    line INTEGER,
    duration_ns INTEGER,
    value TEXT NOT NULL
);
