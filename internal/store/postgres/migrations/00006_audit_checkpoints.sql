-- Signed checkpoints of the audit chain, written before the events they
-- cover are pruned (audit.retention), so verification can start from the
-- newest one it trusts. One row per checkpointed seq; data is the same
-- JSON document Badger stores.

-- +goose Up
CREATE TABLE audit_checkpoints (
    seq  bigint PRIMARY KEY,
    data json NOT NULL
);

-- +goose Down
DROP TABLE audit_checkpoints;
