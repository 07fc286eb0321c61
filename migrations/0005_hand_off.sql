-- A process that runs a worker claims the webhooks it commits, in the same statement, and publishes them from
-- memory; the deliveries its worker writes are likewise claimed by its sender and sent at once. Only rows left
-- unclaimed need waking another process. For webhooks the writer says so itself (it knows whether it claimed,
-- and a transition table would copy every body a second time): the trigger goes.
DROP TRIGGER webhooks_notify_received ON webhooks;
DROP FUNCTION webhooks_notify_received();

CREATE OR REPLACE FUNCTION deliveries_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM inserted WHERE claimed_by IS NULL) THEN
    PERFORM pg_notify('deliveries_due', current_setting('application_name'));
  END IF;
  RETURN NULL;
END
$$;

-- An attempt is recorded with its delivery's new state in one statement, for deliveries that statement has
-- just updated (and so locked): the foreign key's check of each inserted attempt, a lookup and a row lock on a
-- delivery already locked, was about a tenth of Postgres' CPU per webhook. Attempts still go with their
-- delivery, by this trigger rather than ON DELETE CASCADE.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

CREATE FUNCTION deliveries_delete_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deleted);
  RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_delete_attempts
  AFTER DELETE ON deliveries REFERENCING OLD TABLE AS deleted
  FOR EACH STATEMENT EXECUTE FUNCTION deliveries_delete_attempts();

-- What the fan-out has read of the destinations stays true while this number is unchanged: every change to
-- what sending takes (a destination added, removed, enabled or disabled, re-pointed, its patterns, timeout,
-- limit, headers or schedule; a secret added, cut short or removed) counts it up in the changing transaction.
-- The worker's statement checks it in its own snapshot, so it hands deliveries to its sender with settings
-- that are current, read from memory rather than joined for every batch.
CREATE TABLE destinations_version (version bigint NOT NULL);
INSERT INTO destinations_version VALUES (0);

CREATE FUNCTION destinations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE destinations_version SET version = version + 1;
  RETURN NULL;
END
$$;

CREATE TRIGGER destinations_changed AFTER INSERT OR DELETE ON destinations
  FOR EACH STATEMENT EXECUTE FUNCTION destinations_changed();
CREATE TRIGGER destinations_settings_changed
  AFTER UPDATE OF url, events, enabled, timeout_ms, max_in_flight, headers, retry_schedule_seconds ON destinations
  FOR EACH STATEMENT EXECUTE FUNCTION destinations_changed();
CREATE TRIGGER destination_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON destination_secrets
  FOR EACH STATEMENT EXECUTE FUNCTION destinations_changed();
