-- Deliveries written unclaimed wake the other processes' senders from the statement that writes them
-- (src/destinations/fanout.ts: it knows which rows it leaves unclaimed), as webhooks have since 0005. The
-- trigger it replaces ran a PL/pgSQL function over a transition table for every statement that wrote a
-- delivery, claimed or not: about 60 us of Postgres' CPU per statement, at a steady 200 a second where every
-- webhook is its own statement. While a fleet is upgraded, what an older process leaves unclaimed after this
-- migration wakes nobody: the senders' safety-net poll finds it within a second.
DROP TRIGGER deliveries_notify_due ON deliveries;
DROP FUNCTION deliveries_notify_due();
