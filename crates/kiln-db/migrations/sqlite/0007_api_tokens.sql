-- Tokens that scripts send as `Authorization: Bearer` on the web port, made by `kiln token`.
-- Only a token's SHA-256 digest is kept: the token itself is shown once, when it is made.
-- A token acts as a user (`username`), with the roles in `roles_json` added to those the
-- configuration's role matchers give that user.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    roles_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
