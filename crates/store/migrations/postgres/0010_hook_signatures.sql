-- Signatures of deploy-hook requests (POST /deploy) the server took, remembered while their
-- timestamp could still be accepted, so that a captured request sent again is refused by every
-- server replica. The periodic jobs remove those past expires_at.
CREATE TABLE hook_signatures (
    signature   TEXT    PRIMARY KEY,   -- the X-Hub-Signature-256 value
    expires_at  BIGINT  NOT NULL   -- milliseconds since the epoch
);
CREATE INDEX hook_signatures_by_expiry ON hook_signatures (expires_at);
