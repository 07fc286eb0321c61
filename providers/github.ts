import { verify as verifySignature } from '@octokit/webhooks-methods'
import { isFormEncoded, parseForm, parseJsonObject } from '../src/parse.ts'
import { header, MalformedWebhook, type InternalEvent, type Provider } from '../src/provider.ts'

type GitHubPayload = Record<string, any>

const login = (user: unknown): string | null =>
  user && typeof user === 'object' && 'login' in user ? String(user.login) : null

const repositoryOf = (payload: GitHubPayload): string | null => payload.repository?.full_name ?? null

function pullRequest(payload: GitHubPayload): InternalEvent {
  const pr = payload.pull_request ?? {}
  return {
    type: `pull_request.${payload.action}`,
    data: {
      repository: repositoryOf(payload),
      pr_number: pr.number ?? payload.number ?? null,
      title: pr.title ?? null,
      author: login(pr.user),
      base_branch: pr.base?.ref ?? null,
      head_branch: pr.head?.ref ?? null,
    },
  }
}

function issue(payload: GitHubPayload): InternalEvent {
  const issue = payload.issue ?? {}
  return {
    type: `issue.${payload.action}`,
    data: {
      repository: repositoryOf(payload),
      issue_number: issue.number ?? null,
      title: issue.title ?? null,
      author: login(issue.user),
      labels: Array.isArray(issue.labels) ? issue.labels.map((label: any) => label?.name ?? label) : [],
    },
  }
}

export const github: Provider<GitHubPayload> = {
  name: 'github',
  maxBodyBytes: 25 * 1024 * 1024,

  async verify(req, secret, { reject }) {
    const signature = header(req, 'x-hub-signature-256')
    if (!signature) return reject('github: no X-Hub-Signature-256 header')
    // The signature covers the body exactly as sent, urlencoded form included.
    const valid = await verifySignature(secret, req.body.toString('utf8'), signature)
    return valid || reject('github: X-Hub-Signature-256 does not match')
  },

  parse(req) {
    if (!isFormEncoded(header(req, 'content-type'))) return parseJsonObject(req.body, 'github')
    const { payload } = parseForm(req.body)
    if (typeof payload !== 'string')
      throw new MalformedWebhook('github: form body has no single payload field')
    return parseJsonObject(payload, 'github')
  },

  // The same delivery GUID reaches every hook subscribed to the event, so the hook id is part of the key.
  eventKey(req) {
    const delivery = header(req, 'x-github-delivery')
    if (!delivery) return undefined
    const hookId = header(req, 'x-github-hook-id')
    return hookId ? `${hookId}:${delivery}` : delivery
  },

  eventType(req, payload) {
    const event = header(req, 'x-github-event')
    if (!event) return undefined
    return typeof payload.action === 'string' && payload.action ? `${event}.${payload.action}` : event
  },

  handlers: {
    push: (payload) => ({
      type: 'git.push',
      data: {
        repository: repositoryOf(payload),
        ref: payload.ref ?? null,
        commits: Array.isArray(payload.commits) ? payload.commits.length : 0,
        pusher: payload.pusher?.name ?? login(payload.sender),
        head_commit: payload.head_commit
          ? {
              id: payload.head_commit.id,
              message: payload.head_commit.message,
              timestamp: payload.head_commit.timestamp,
              url: payload.head_commit.url,
              author: payload.head_commit.author?.username ?? payload.head_commit.author?.name ?? null,
            }
          : null,
      },
    }),
    'pull_request.*': pullRequest,
    'issues.opened': issue,
    'issues.closed': issue,
  },
}
