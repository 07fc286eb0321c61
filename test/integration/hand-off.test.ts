import { beforeAll, describe, expect, it } from 'vitest'
import { startReceiver, verifyStandardWebhook, type Receiver } from '../support/receiver.ts'
import { adminApi, useTestDatabase, waitFor, type Capture, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

/**
 * The in-process hand-off (ROLE=all): what intake commits is written claimed by this process's worker, its
 * deliveries to destinations in the same statement and claimed by its sender, and both go out from memory.
 * Postgres itself is watched: triggers log every claim a worker or sender takes with a statement of its own.
 */

const secret = 'whsec_hand_off'
const adminToken = 'admin-hand-off'
const db = useTestDatabase()
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: secret,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    // No safety-net poll in the way: whatever is sent, is sent through the hand-off.
    WORKER_POLL_MS: '60000',
    DELIVERY_POLL_MS: '60000',
  })
  events = await db.captureEvents(gw.config)
  await db.sql.unsafe(`
    CREATE TABLE test_claims (kind text, id uuid, claimed_by int);
    CREATE FUNCTION test_log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO test_claims VALUES (TG_TABLE_NAME || ' inserted', NEW.id, NEW.claimed_by);
      ELSIF OLD.claimed_by IS NULL AND NEW.claimed_by IS NOT NULL THEN
        INSERT INTO test_claims VALUES (TG_TABLE_NAME || ' claimed', NEW.id, NEW.claimed_by);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_log_claim AFTER INSERT OR UPDATE ON webhooks FOR EACH ROW EXECUTE FUNCTION test_log_claim();
    CREATE TRIGGER test_log_claim AFTER INSERT OR UPDATE ON deliveries FOR EACH ROW EXECUTE FUNCTION test_log_claim();`)
})

const admin = adminApi(() => gw, adminToken)

async function receiver(): Promise<Receiver> {
  const started = await startReceiver()
  db.defer(() => started.close())
  return started
}

async function postPayment(): Promise<{ webhookId: string; paymentId: string }> {
  const event = paymentIntentSucceeded()
  const { body, headers } = stripeDelivery(event, { secret })
  const answer = (await (await gw.post('/webhooks/stripe', body, headers)).json()) as {
    status: string
    id: string
  }
  expect(answer.status).toBe('accepted')
  return { webhookId: answer.id, paymentId: event.data.object.id as string }
}

const claimsOf = async (id: string) =>
  (
    await db.sql<{ kind: string; claimed_by: number | null }[]>`
    SELECT kind, claimed_by FROM test_claims WHERE id = ${id} ORDER BY kind`
  ).map((row) => ({
    kind: row.kind,
    claimed: row.claimed_by !== null,
  }))

describe('the in-process hand-off', () => {
  it('commits a webhook and its delivery claimed, and publishes and sends both without a claim of their own', async () => {
    const endpoint = await receiver()
    const destination = await admin('POST', '/destinations', { url: endpoint.url, events: ['payment.*'] })
    expect(destination.status).toBe(201)
    db.defer(() => admin('DELETE', `/destinations/${destination.body.id}`))

    // The first webhook after a destination is created may find the destinations changed since they were
    // read: it is fanned out by the worker's record instead. From then on, by intake's own statement.
    await postPayment()
    await endpoint.waitForRequests(1, 10_000)
    const { webhookId, paymentId } = await postPayment()
    const [request] = (await endpoint.waitForRequests(2, 10_000)).slice(1)
    expect((verifyStandardWebhook(request!, destination.body.secret) as any).data.payment_id).toBe(paymentId)
    await events.waitFor((messages) =>
      messages.some((m) => m.event.webhookid === webhookId && m.event.type === 'payment.completed'),
    )

    expect(await claimsOf(webhookId)).toEqual([{ kind: 'webhooks inserted', claimed: true }])
    const [delivery] = await db.sql<{ id: string; webhook_id: string }[]>`
      SELECT id, webhook_id FROM deliveries WHERE webhook_id = ${webhookId}`
    expect(await claimsOf(delivery!.id)).toEqual([{ kind: 'deliveries inserted', claimed: true }])
    // The marks and the attempt's record follow within a fraction of a second, and free both claims.
    await waitFor(async () => {
      const [row] = await db.sql<{ published: boolean; delivered: boolean }[]>`
        SELECT (SELECT status = 'published' AND claimed_by IS NULL FROM webhooks WHERE id = ${webhookId}) AS published,
               (SELECT status = 'delivered' AND claimed_by IS NULL FROM deliveries WHERE id = ${delivery!.id}) AS delivered`
      return row?.published === true && row.delivered === true
    }, 5000)
  })

  it('sends where a destination points now, and nothing to one disabled a moment ago', async () => {
    const before = await receiver()
    const after = await receiver()
    const destination = await admin('POST', '/destinations', { url: before.url, events: ['payment.*'] })
    db.defer(() => admin('DELETE', `/destinations/${destination.body.id}`))
    await postPayment()
    await before.waitForRequests(1, 10_000)

    expect((await admin('PATCH', `/destinations/${destination.body.id}`, { url: after.url })).status).toBe(
      200,
    )
    const { paymentId } = await postPayment()
    const [moved] = await after.waitForRequests(1, 10_000)
    expect((verifyStandardWebhook(moved!, destination.body.secret) as any).data.payment_id).toBe(paymentId)

    expect((await admin('PATCH', `/destinations/${destination.body.id}`, { enabled: false })).status).toBe(
      200,
    )
    const { webhookId } = await postPayment()
    await waitFor(async () => {
      const [row] = await db.sql<{ status: string }[]>`SELECT status FROM webhooks WHERE id = ${webhookId}`
      return row?.status === 'published'
    }, 5000)
    const [waiting] = await db.sql<{ status: string; claimed_by: number | null }[]>`
      SELECT status, claimed_by FROM deliveries WHERE webhook_id = ${webhookId}`
    expect(waiting).toEqual({ status: 'pending', claimed_by: null })
    expect(after.requests).toHaveLength(1)
    expect(before.requests).toHaveLength(1)
  })
})
