-- Bulk actions not finished yet (pending or running), for the reconciler's look for those whose
-- job was lost: a worker killed during the job leaves it 'doing' until the reconciler fails it,
-- and then nothing runs the rest (tasks/queue/reconcile.py, bulk_lost_jobs in
-- tasks/queue/procrastinate_boundary.py). Small: only the actions in flight are in it.
CREATE INDEX bulk_actions_unfinished_idx ON bulk_actions (created_at) WHERE state IN ('pending', 'running');
