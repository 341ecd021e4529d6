-- The connection list filters by provider or status and pages in id order:
-- with the id in the index a page is a range scan, not a sort of every
-- matching row (100,000 connections of one provider: a campaign's plan
-- paged through in seconds on PostgreSQL instead of a minute). Keep the
-- sqlite and postgres files in step.
DROP INDEX connections_provider;
DROP INDEX connections_status;
CREATE INDEX connections_provider ON connections (tenant, provider, id);
CREATE INDEX connections_status ON connections (tenant, status, id);
