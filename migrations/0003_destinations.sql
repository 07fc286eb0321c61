-- HTTP endpoints that receive events, signed per Standard Webhooks.
CREATE TABLE destinations (
  id                     uuid PRIMARY KEY,
  name                   text UNIQUE,
  -- 'file' for destinations declared in DESTINATIONS_FILE (keyed by name), 'api' otherwise.
  source                 text        NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'file')),
  url                    text        NOT NULL,
  -- Routing-key patterns, as in RabbitMQ topic bindings: `*` one word, `#` zero or more.
  events                 text[]      NOT NULL,
  enabled                boolean     NOT NULL DEFAULT true,
  disabled_reason        text,
  timeout_ms             integer     NOT NULL,
  max_in_flight          integer     NOT NULL,
  headers                jsonb       NOT NULL DEFAULT '{}',
  -- Delays before each retry; a failure after the last one makes the delivery failed.
  retry_schedule_seconds double precision[] NOT NULL,
  consecutive_failures   integer     NOT NULL DEFAULT 0,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Several secrets sign at once while one is rotated out: each request carries a signature per active secret.
CREATE TABLE destination_secrets (
  destination_id uuid        NOT NULL REFERENCES destinations ON DELETE CASCADE,
  secret         text        NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  -- NULL: signs until rotated; otherwise the end of its overlap with the newer secret.
  expires_at     timestamptz,
  PRIMARY KEY (destination_id, secret)
);

-- One event for one destination: the outbox row, written in the transaction that records the webhook handled.
CREATE TABLE deliveries (
  id               uuid PRIMARY KEY,
  destination_id   uuid        NOT NULL REFERENCES destinations ON DELETE CASCADE,
  webhook_id       uuid        NOT NULL,
  -- The CloudEvent id: the request's `webhook-id`, the same on every attempt and replay.
  event_id         uuid        NOT NULL,
  event_type       text        NOT NULL,
  -- The CloudEvent JSON exactly as published on RabbitMQ.
  payload          text        NOT NULL,
  status           text        NOT NULL DEFAULT 'pending',
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_status_code integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  -- A webhook handled twice (a lease ran out mid-publish) or replayed fans out to nobody twice.
  CONSTRAINT deliveries_destination_event UNIQUE (destination_id, event_id),
  CONSTRAINT deliveries_status CHECK (status IN ('pending', 'delivered', 'failed'))
);
-- lz4 where the server has it, as for webhook bodies (0002).
DO $$
BEGIN
  ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available on this server; payloads stay compressed with pglz';
END
$$;

-- What the sender claims: due deliveries of each destination, oldest first.
CREATE INDEX deliveries_due ON deliveries (destination_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_destination_status ON deliveries (destination_id, status, created_at DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id);
-- What retention deletes: deliveries finished long enough ago (a failed one's last attempt is its next_attempt_at).
CREATE INDEX deliveries_delivered_at ON deliveries (delivered_at) WHERE status = 'delivered';
CREATE INDEX deliveries_failed_at ON deliveries (next_attempt_at) WHERE status = 'failed';

-- Every request made to a destination and what came back.
CREATE TABLE delivery_attempts (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id      uuid        NOT NULL REFERENCES deliveries ON DELETE CASCADE,
  attempted_at     timestamptz NOT NULL,
  duration_ms      double precision NOT NULL,
  status_code      integer,
  response_headers jsonb,
  -- The first 10 KB of the answer.
  response_body    text,
  error            text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Webhooks whose events have been fanned out to destinations. Kept apart from `status` (the RabbitMQ side),
-- because HTTP delivery must not wait on the broker: while it is down, webhooks are routed but not published.
ALTER TABLE webhooks ADD COLUMN routed_at timestamptz;

-- What retention deletes: webhooks published (or dead: their last attempt is next_attempt_at) long enough ago.
CREATE INDEX webhooks_published_at ON webhooks (published_at) WHERE status = 'published';
CREATE INDEX webhooks_dead_at ON webhooks (next_attempt_at) WHERE status = 'dead';

-- Sender processes wake within milliseconds of new deliveries instead of waiting for their poll. Only when
-- rows came in: the worker's statement carries an INSERT into deliveries that is empty with no destinations.
-- The payload names the writing process (its application_name), which has woken its own sender already.
CREATE FUNCTION deliveries_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM inserted) THEN
    PERFORM pg_notify('deliveries_due', current_setting('application_name'));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_notify_due
  AFTER INSERT ON deliveries REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify_due();

-- The same for stored webhooks: the process that stored them has woken its own worker; only the others need
-- the notification, and they tell it from their own by the payload.
CREATE OR REPLACE FUNCTION webhooks_notify_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('webhooks_received', current_setting('application_name'));
  RETURN NULL;
END
$$;
