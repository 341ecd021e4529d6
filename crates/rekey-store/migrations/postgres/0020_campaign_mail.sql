-- E-mail to owners (a campaign's reauthorization link, its reminder),
-- queued in the transaction that made the link or recorded the reminder
-- and sent by the mail worker under a lease, with retries. A row holds no
-- secret: the message is composed at send time from the sealed link
-- token, and a row whose link was replaced or used meanwhile is dropped.
-- Keep the sqlite and postgres files in step.
CREATE TABLE campaign_mail (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    -- The link (connect session) the message carries.
    session_id TEXT NOT NULL,
    -- `link` or `reminder`.
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- `pending`, `sent`, `failed` (gave up) or `dropped` (link gone).
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX campaign_mail_due ON campaign_mail (due_at) WHERE state = 'pending';
CREATE INDEX campaign_mail_campaign ON campaign_mail (tenant, campaign_id, id);
