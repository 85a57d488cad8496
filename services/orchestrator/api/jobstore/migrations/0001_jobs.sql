-- The job table, shared by every orchestrator replica. Portable SQL: this file runs unchanged on
-- SQLite and PostgreSQL (TEXT, BIGINT, INTEGER, DOUBLE PRECISION only; no engine-specific types,
-- no AUTOINCREMENT/SERIAL). Statements are separated by semicolons at line ends (migrate.py splits
-- on them: no semicolons inside strings here).

-- Submit order. A counter row, bumped in the creating transaction (and so taken in turn), instead
-- of SQLite AUTOINCREMENT or a PostgreSQL sequence, neither of which the other engine has.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('job_seq', 0);

-- One row per job. The columns are what the store queries and locks on; `record` is the whole
-- faceflow.v1.Job message (options, progress, error, submitter...), serialized protobuf bytes in
-- base64. Why bytes and not protobuf JSON: a replica on an older build rewrites a record without
-- dropping the fields it does not know (binary keeps unknown fields, JSON parsing would drop or
-- reject them) during a rolling upgrade, and it is the cheaper encoding on every progress update;
-- everything an operator filters on is a column. `state` is the authority for the job's state (the
-- record's progress.state is kept equal to it); queue_position is computed on read, never stored.
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE,
    ep_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- NULL when the client gave none: NULLs never collide in a UNIQUE column, on either engine.
    idempotency_key TEXT UNIQUE,
    -- QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED
    state TEXT NOT NULL,
    -- The replica running it and until when (seconds since the epoch); NULL unless RUNNING.
    owner TEXT,
    lease_until DOUBLE PRECISION,
    -- 0 or 1 (INTEGER rather than BOOLEAN: SQLite has no boolean type).
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- Grows by one on every change of the job (not on a lease renewal): watchers compare it.
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    record TEXT NOT NULL
);
-- claim (oldest QUEUED, or RUNNING with a lapsed lease) and queue positions.
CREATE INDEX jobs_state_seq ON jobs (state, seq);
-- list(ep_id)
CREATE INDEX jobs_ep_seq ON jobs (ep_id, seq);
-- evict_finished
CREATE INDEX jobs_finished_at ON jobs (finished_at);
