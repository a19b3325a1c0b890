-- Keys every node of a deployment must share (URL and webhook signing), kept with the
-- requests so that nodes sharing a database share them. The first value stored wins.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL                         -- hex
);
