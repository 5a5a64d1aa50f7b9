-- Email sinks: who a sink of kind `email` writes to and as whom. Its `url_sealed` holds the
-- SMTP server's URL (smtp://[USER@]HOST[:PORT]) and `secret_sealed` its password, both sealed
-- like the other sinks' URLs and secrets. NULL for every other kind.
ALTER TABLE notification_sinks ADD COLUMN email_to TEXT;     -- the recipients, one a line
ALTER TABLE notification_sinks ADD COLUMN email_from TEXT;   -- the sender
