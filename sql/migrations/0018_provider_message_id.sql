-- The provider's own id of a sent message, when its HTTP API gives one: Amazon SES's
-- MessageId, SendGrid's X-Message-Id (tasks/delivery/providers.py). Written with the
-- outcome (finish_emails) and on its timeline event; NULL for SMTP, which gives none
-- that can be relied on. The providers' events about a message (delivered, bounced…)
-- name it by this id: the index finds the email they are about.

ALTER TABLE emails ADD COLUMN provider_message_id text;

CREATE INDEX emails_provider_message_id_idx ON emails (provider_message_id)
 WHERE provider_message_id IS NOT NULL;
