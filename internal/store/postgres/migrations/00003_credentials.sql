-- Upstream credentials: third-party providers (GitHub, Atlassian, a SaaS
-- API key) and the accounts users connected at them. As for every other
-- record, data is the JSON document the Badger backend stores; the
-- provider's client secret and each account's tokens or key are sealed
-- inside it (internal/seal), never stored in the clear.

-- +goose Up
CREATE TABLE providers (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    data    json NOT NULL
);

CREATE TABLE accounts (
    provider text COLLATE "C" NOT NULL,
    subject  text COLLATE "C" NOT NULL,
    version  bigint NOT NULL,
    data     json NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX accounts_subject ON accounts (subject);

-- +goose Down
DROP TABLE accounts;
DROP TABLE providers;
