/** The GitHub events `npm run send` offers: the X-GitHub-Event header, then the action where there is one. */
export const githubEvents = ['push', 'pull_request.opened', 'issues.opened', 'issues.closed', 'ping'] as const

export interface GitHubPayload {
  /** The X-GitHub-Event header. */
  readonly event: string
  readonly payload: Record<string, any>
}

interface Example {
  readonly name: string
  readonly examples: Record<string, any>[]
}

let examples: Promise<readonly Example[]> | undefined

/** Loads @octokit/webhooks-examples (4 MB of JSON) once, before any delivery is timed. */
export function loadGitHubExamples(): Promise<readonly Example[]> {
  examples ??= import('@octokit/webhooks-examples/api.github.com/index.json', {
    with: { type: 'json' },
  }).then((loaded) => loaded.default as unknown as Example[])
  return examples
}

/**
 * A payload GitHub really sent, from @octokit/webhooks-examples (a devDependency: `npm run send` is a
 * developer's tool). It has no `issues.closed` example, so that one is the opened issue, closed.
 */
export async function githubPayload(name: (typeof githubEvents)[number]): Promise<GitHubPayload> {
  const entries = await loadGitHubExamples()
  const [event, action] = name.split('.') as [string, string | undefined]
  const first = (predicate: (example: Record<string, any>) => boolean): Record<string, any> => {
    const example = entries.find((item) => item.name === event)?.examples.find(predicate)
    if (!example) throw new Error(`github: @octokit/webhooks-examples has no ${name} example`)
    return structuredClone(example)
  }
  if (event === 'push') {
    // A branch push with commits, rather than the tag pushes that come first in the examples.
    return { event, payload: first((p) => p.ref?.startsWith('refs/heads/') && p.commits?.length > 0) }
  }
  if (name === 'issues.closed') {
    const payload = first((p) => p.action === 'opened')
    const closedAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    payload.action = 'closed'
    Object.assign(payload.issue, { state: 'closed', state_reason: 'completed', closed_at: closedAt })
    return { event, payload }
  }
  return { event, payload: first((p) => p.action === action) }
}
