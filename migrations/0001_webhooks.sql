-- Every accepted delivery, exactly as received, and its publishing state.
CREATE TABLE webhooks (
  id                  uuid PRIMARY KEY,
  provider            text        NOT NULL,
  event_key           text        NOT NULL,
  event_type          text        NOT NULL,
  method              text        NOT NULL,
  path                text        NOT NULL,
  public_url          text        NOT NULL,
  headers             jsonb       NOT NULL,
  body                bytea       NOT NULL,
  received_at         timestamptz NOT NULL,
  status              text        NOT NULL DEFAULT 'pending',
  attempts            integer     NOT NULL DEFAULT 0,
  next_attempt_at     timestamptz NOT NULL DEFAULT now(),
  last_error          text,
  published_event_ids text[]      NOT NULL DEFAULT '{}',
  published_at        timestamptz,
  -- The source of truth for idempotency: one row per provider event, whatever Redis says.
  CONSTRAINT webhooks_provider_event_key UNIQUE (provider, event_key),
  CONSTRAINT webhooks_status CHECK (status IN ('pending', 'retrying', 'published', 'dead'))
);

-- What the worker claims: due rows only, oldest first.
CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX webhooks_received_at ON webhooks (received_at DESC);
CREATE INDEX webhooks_status_received_at ON webhooks (status, received_at DESC);

-- One notification per INSERT statement (a group commit is one statement), so workers in other
-- processes wake within milliseconds instead of waiting for their poll.
CREATE FUNCTION webhooks_notify_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('webhooks_received', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER webhooks_notify_received
  AFTER INSERT ON webhooks
  FOR EACH STATEMENT EXECUTE FUNCTION webhooks_notify_received();
