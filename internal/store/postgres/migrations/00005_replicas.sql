-- Replicas: what keeps hot caches exact when several Warden processes
-- share this schema (see docs/ARCHITECTURE.md, "Replicas").
--
-- Every write to a grant or a handle notifies the schema's channel
-- (warden_<first 16 hex of md5(schema)>) with "g:<id>" or "h:<digest>",
-- from a trigger, so no writer can forget it; PostgreSQL delivers it at
-- commit, in commit order. A replica drops what it cached on the
-- notification. A revocation then bumps revocation_epoch (notifying
-- "e:<epoch>") and waits until every replica whose lease is live has
-- acknowledged that epoch in its row of replicas: a replica acknowledges
-- only after it has handled every notification committed before it.
--
-- shared_blobs holds the key sets every replica uses (signing keys,
-- sealing keys), sealed by the replicas under their key-encryption key.
-- rate_limits holds one GCRA cell per limited key, so limits count for
-- the whole deployment.

-- +goose Up
CREATE TABLE replicas (
    id          text COLLATE "C" PRIMARY KEY,
    acked_epoch bigint NOT NULL,
    lease_until timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    info        json NOT NULL
);

CREATE TABLE revocation_epoch (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch bigint NOT NULL
);
INSERT INTO revocation_epoch (one, epoch) VALUES (true, 0);

-- +goose StatementBegin
-- The key is read by name (TG_ARGV[1]) from the row itself, not through
-- row_to_json: a record's data may hold \u0000, which json text
-- extraction refuses.
CREATE FUNCTION warden_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ch text := 'warden_' || left(md5(TG_TABLE_SCHEMA), 16);
    old_key text;
    new_key text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) USING OLD INTO old_key;
        PERFORM pg_notify(ch, TG_ARGV[0] || ':' || old_key);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) USING NEW INTO new_key;
        IF new_key IS DISTINCT FROM old_key THEN
            PERFORM pg_notify(ch, TG_ARGV[0] || ':' || new_key);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER grants_notify AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION warden_notify_change('g', 'id');
CREATE TRIGGER handles_notify AFTER INSERT OR UPDATE OR DELETE ON handles
    FOR EACH ROW EXECUTE FUNCTION warden_notify_change('h', 'digest');
CREATE TRIGGER servers_notify AFTER INSERT OR UPDATE OR DELETE ON servers
    FOR EACH ROW EXECUTE FUNCTION warden_notify_change('s', 'name');

CREATE TABLE shared_blobs (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    data    bytea NOT NULL
);
CREATE TRIGGER shared_blobs_notify AFTER INSERT OR UPDATE OR DELETE ON shared_blobs
    FOR EACH ROW EXECUTE FUNCTION warden_notify_change('b', 'name');

CREATE TABLE rate_limits (
    bucket text COLLATE "C" NOT NULL,
    key    text COLLATE "C" NOT NULL,
    -- tat is the GCRA theoretical arrival time, in microseconds since
    -- the Unix epoch.
    tat    bigint NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);

-- +goose Down
DROP TABLE rate_limits;
DROP TRIGGER shared_blobs_notify ON shared_blobs;
DROP TABLE shared_blobs;
DROP TRIGGER servers_notify ON servers;
DROP TRIGGER handles_notify ON handles;
DROP TRIGGER grants_notify ON grants;
DROP FUNCTION warden_notify_change();
DROP TABLE revocation_epoch;
DROP TABLE replicas;
