-- When each grant was last used on each server (an allowed Check), for the
-- console's access matrix. Warden tracks uses in memory and writes them in
-- batches: one row per grant and server, only ever moved forward. A
-- deleted grant's rows go with it (DeleteGrant).

-- +goose Up
CREATE TABLE last_use (
    grant_id text COLLATE "C" NOT NULL,
    server   text COLLATE "C" NOT NULL,
    used_at  timestamptz NOT NULL,
    PRIMARY KEY (grant_id, server)
);

-- +goose Down
DROP TABLE last_use;
