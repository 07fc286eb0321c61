/**
 * Whether `routingKey` matches a RabbitMQ topic binding `pattern`: words are separated by dots, `*` stands
 * for exactly one word and `#` for zero or more, as the broker decides it, so a destination and a queue
 * bound with the same pattern receive the same events.
 */
export function topicMatches(pattern: string, routingKey: string): boolean {
  const want = pattern.split('.')
  const words = routingKey.split('.')
  // matched[j]: the pattern's words so far can match the first j words of the key.
  let matched = words.map((_, j) => j === 0)
  matched.push(words.length === 0)
  for (const part of want) {
    const next = new Array<boolean>(words.length + 1).fill(false)
    for (let j = 0; j <= words.length; j++) {
      if (part === '#') next[j] = matched[j]! || (j > 0 && next[j - 1]!)
      else if (j > 0) next[j] = matched[j - 1]! && (part === '*' || part === words[j - 1])
    }
    matched = next
  }
  return matched[words.length]!
}

/** The patterns a destination asked for match this event type (its routing key). */
export const wantsEvent = (patterns: readonly string[], type: string) =>
  patterns.some((pattern) => topicMatches(pattern, type))

/** Why a pattern cannot be used, or undefined. RabbitMQ caps routing keys and binding keys at 255 bytes. */
export function patternProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'an event pattern is empty'
  if (Buffer.byteLength(pattern) > 255) return `event pattern ${pattern.slice(0, 40)}… is over 255 bytes`
  if (/\s/.test(pattern)) return `event pattern "${pattern}" contains whitespace`
  return undefined
}
