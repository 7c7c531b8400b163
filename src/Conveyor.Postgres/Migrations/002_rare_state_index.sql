-- Every task passes through ready (1), running (2) and succeeded (3): an index over all states took an
-- entry on each of those updates. Listing those states walks the primary key from the newest row
-- (where they are); the rare states keep an index so that listing them never scans the table.
DROP INDEX tasks_state;
CREATE INDEX tasks_rare_state ON tasks (state, seq) WHERE state NOT IN (1, 2, 3);
