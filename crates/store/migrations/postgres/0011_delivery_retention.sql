-- Webhook bodies are kept for a retention period, then emptied (''); the delivery and its
-- deduplication key stay, so an old body sent again is still a duplicate. The bodies still
-- held, by age, for the periodic jobs that empty them.
CREATE INDEX deliveries_with_body ON deliveries (received_at) WHERE body <> '';
