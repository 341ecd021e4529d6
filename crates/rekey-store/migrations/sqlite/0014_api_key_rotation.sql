-- rekey's own API keys rotate: the new key names the one it replaced
-- (`rotated_from`), the old one its successor (`rotated_to`) and, during the
-- overlap grace, when it stops working (`expires_at`; authentication
-- refuses a key past it). Keep the sqlite and postgres files in step.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN rotated_from TEXT;
ALTER TABLE api_keys ADD COLUMN rotated_to TEXT;
