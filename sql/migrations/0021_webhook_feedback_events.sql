-- Webhook endpoints may subscribe to the providers' delivery feedback too: email.bounced and
-- email.complained (tasks/domain/feedback.py writes them with the state change it records;
-- the types are tasks/webhooks/events.py's TYPES).
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_event_types_check;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_event_types_check CHECK (
    cardinality(event_types) >= 1
    AND event_types <@ ARRAY['email.sent', 'email.failed', 'email.uncertain', 'email.offline',
                             'email.cancelled', 'email.bounced', 'email.complained',
                             'batch.completed', 'recurrence.paused']);
