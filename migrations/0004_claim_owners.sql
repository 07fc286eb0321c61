-- Who holds a claim: the number of the gateway process that claimed the row, while it is claimed (NULL
-- otherwise). Each process holds a session advisory lock on its number, so a claim whose owner's lock is gone
-- (the process was killed, its session ended) is taken back within seconds instead of when its lease ends.
ALTER TABLE webhooks ADD COLUMN claimed_by integer;
ALTER TABLE deliveries ADD COLUMN claimed_by integer;

-- The claims held right now: a handful of rows, whatever the tables' size.
CREATE INDEX webhooks_claimed ON webhooks (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
