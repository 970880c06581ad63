-- What the retired 0008_spread.sql left behind. It created this index for the
-- spread of a burst (queries.sql, spread_candidates); the spread now reads
-- through emails_due_idx, and the file was deleted to spare every write to
-- emails one more index. Deleting a migration does not undo it: each database
-- that ran 0008 kept the index, and its write cost. IF EXISTS: a database
-- created after the deletion never had it.
-- Dropping an index takes a brief exclusive lock on emails (no rows are read).
DROP INDEX IF EXISTS emails_owner_unslotted_due_idx;
