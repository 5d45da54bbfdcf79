-- Tool pinning: per server and tool, the digest of the approved
-- definition and of the one the server listed last (internal/toolpin).
-- id is "<server>/<tool>" (server names hold no '/'), like Badger's key;
-- server is the column ListToolPins filters on.

-- +goose Up
CREATE TABLE tool_pins (
    id      text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    server  text COLLATE "C" NOT NULL,
    data    json NOT NULL
);
CREATE INDEX tool_pins_server ON tool_pins (server, id);

-- +goose Down
DROP TABLE tool_pins;
