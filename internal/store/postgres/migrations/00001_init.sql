-- The first schema of Warden's PostgreSQL store.
--
-- Every record is kept as the same JSON document the Badger backend stores
-- (column data), so the two backends hold identical records and a copy
-- between them is exact. The type is json, not jsonb: json keeps the text
-- as written and accepts \u0000, which jsonb refuses; a client-controlled
-- string with a NUL must never make a write fail. Columns beside data are
-- the keys and the fields queries filter on, written from the same record
-- in the same statement.
--
-- Keys use the "C" collation so that listings come back in byte order, as
-- Badger's key order gives them.

-- +goose Up
CREATE TABLE clients (
    id         text COLLATE "C" PRIMARY KEY,
    version    bigint NOT NULL,
    expires_at timestamptz,
    data       json NOT NULL
);
CREATE INDEX clients_expires_at ON clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE grants (
    id        text COLLATE "C" PRIMARY KEY,
    version   bigint NOT NULL,
    subject   text NOT NULL,
    client_id text NOT NULL,
    servers   text[] NOT NULL,
    revoked   boolean NOT NULL,
    data      json NOT NULL
);
CREATE INDEX grants_subject ON grants (subject);
CREATE INDEX grants_client_id ON grants (client_id);
CREATE INDEX grants_servers ON grants USING gin (servers);

-- Handles are keyed by the hex SHA-256 digest of the raw handle. There is
-- no foreign key to grants: a grant may be pruned while its (dead) handles
-- wait for the sweep, and such a handle resolves as not found.
CREATE TABLE handles (
    digest     text COLLATE "C" PRIMARY KEY,
    version    bigint NOT NULL,
    grant_id   text NOT NULL,
    expires_at timestamptz NOT NULL,
    data       json NOT NULL
);
CREATE INDEX handles_expires_at ON handles (expires_at);
CREATE INDEX handles_grant_id ON handles (grant_id);

CREATE TABLE servers (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    data    json NOT NULL
);

CREATE TABLE sessions (
    kind       text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    value      bytea,
    PRIMARY KEY (kind, id)
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE consents (
    subject   text COLLATE "C" NOT NULL,
    client_id text COLLATE "C" NOT NULL,
    data      json NOT NULL,
    PRIMARY KEY (subject, client_id)
);
CREATE INDEX consents_client_id ON consents (client_id);

-- The audit trail. audit_head holds one row, the seq of the newest event:
-- every append updates it under its row lock, so appends from any number
-- of connections and replicas are serialized and each continues the chain
-- exactly where the last committed one ended.
CREATE TABLE audit_events (
    seq  bigint PRIMARY KEY CHECK (seq > 0),
    data json NOT NULL
);

CREATE TABLE audit_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL CHECK (seq >= 0)
);
INSERT INTO audit_head (one, seq) VALUES (true, 0);

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE consents;
DROP TABLE sessions;
DROP TABLE servers;
DROP TABLE handles;
DROP TABLE grants;
DROP TABLE clients;
