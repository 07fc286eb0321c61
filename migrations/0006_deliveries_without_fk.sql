-- A delivery's destination is no longer a foreign key. Its check ran for every inserted delivery (a lookup in
-- destinations and a share lock on the destination's row, a record in the WAL each time): about a tenth of the
-- time Postgres spends on a webhook's rows, and more at a trickle. What it guaranteed is kept another way:
--   - Deleting a destination deletes its deliveries (and so their attempts), by the trigger below rather than
--     ON DELETE CASCADE.
--   - No delivery is written for a destination being deleted: every statement that writes deliveries locks
--     destinations_version FOR SHARE and writes nothing unless it is the version the fan-out read
--     (src/destinations/fanout.ts). A deletion counts the version up before it deletes the deliveries, so
--     either it waits for that statement to commit and then deletes what it wrote (each statement of the
--     function below sees what committed before it), or the statement waits for the deletion to commit and
--     finds the version changed.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_destination_id_fkey;

CREATE FUNCTION destinations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE destinations_version SET version = version + 1;
  DELETE FROM deliveries WHERE destination_id IN (SELECT id FROM deleted);
  RETURN NULL;
END
$$;

CREATE TRIGGER destinations_deleted AFTER DELETE ON destinations REFERENCING OLD TABLE AS deleted
  FOR EACH STATEMENT EXECUTE FUNCTION destinations_deleted();
