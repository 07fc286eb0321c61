import { lookup as dnsLookup } from 'node:dns'
import { isIP, isIPv6, type LookupFunction } from 'node:net'
import ipaddr from 'ipaddr.js'
import { Agent, buildConnector } from 'undici'

export interface AddressPolicy {
  /** ALLOW_HTTP_DESTINATIONS: accept http: URLs as well as https:. */
  readonly allowHttp: boolean
  /** DESTINATION_ALLOWED_HOSTS: hostnames or IP literals exempt from the private-address refusal. */
  readonly allowedHosts: readonly string[]
}

/** A destination's address is not public; the code lets a caller treat it as final instead of retrying. */
export class DestinationRefusedError extends Error {
  readonly code = 'EDESTINATIONREFUSED'
  override readonly name = 'DestinationRefusedError'
}

/** ipaddr's range names, as the noun phrase that ends a refusal. */
const rangeDescriptions: Readonly<Record<string, string>> = {
  unspecified: 'an unspecified address',
  broadcast: 'a broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address',
  private: 'a private address',
  reserved: 'a reserved address',
  uniqueLocal: 'a unique local address',
  deprecatedSiteLocal: 'a site-local address',
  '6to4': 'a 6to4 address',
  teredo: 'a Teredo address',
  rfc6052: 'a NAT64 address',
  rfc6145: 'an IPv4-translated address',
  benchmarking: 'a benchmarking address',
  discard: 'a discard-only address',
}

// ipaddr calls unassigned IPv6 space such as ::/8 'unicast'; only 2000::/3 is handed out (RFC 4291, IANA).
const globalUnicastIPv6 = ipaddr.parseCIDR('2000::/3')

/** Why an address is not a public unicast one, as a noun phrase ("a loopback address"), or undefined. */
function refusedAddressDescription(address: string): string | undefined {
  // ipaddr also reads forms like 0x7f.1 that resolvers may read differently: accept only what sockets do
  if (isIP(address) === 0 || !ipaddr.isValid(address)) return 'not an IP address'
  const unwrapped = ipaddr.process(address)
  const range = unwrapped.range()
  const outsideGlobalUnicast = unwrapped.kind() === 'ipv6' && !unwrapped.match(globalUnicastIPv6)
  if (range === 'unicast' && !outsideGlobalUnicast) return undefined
  const description =
    range === 'unicast'
      ? 'an unassigned address'
      : (rangeDescriptions[range] ?? `an address in the ${range} range`)
  return isIPv6(address) && unwrapped.kind() === 'ipv4' ? `${description} in IPv4-mapped form` : description
}

/** Undefined for a public unicast IPv4 or IPv6 address; otherwise why a destination may not use it. */
export function refusedAddressReason(address: string): string | undefined {
  const description = refusedAddressDescription(address)
  return description === undefined ? undefined : `${address} is ${description}`
}

function withoutBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

/** One spelling per host, so '[::1]', '0:0::1' and '::1', or 'LocalHost' and 'localhost', compare equal. */
function hostKey(host: string): string {
  const bare = withoutBrackets(host)
  return isIP(bare) !== 0 && ipaddr.isValid(bare) ? ipaddr.parse(bare).toString() : bare.toLowerCase()
}

function allowedHostChecker(policy: AddressPolicy): (host: string) => boolean {
  const allowedKeys = new Set(policy.allowedHosts.map(hostKey))
  return (host) => allowedKeys.has(hostKey(host))
}

/** Checks a destination URL on create or update: undefined if fine, else a message for a 400 answer. */
export function destinationUrlProblem(url: string, policy: AddressPolicy): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'url must be an absolute URL'
  }
  if (parsed.protocol !== 'https:' && !(policy.allowHttp && parsed.protocol === 'http:')) {
    return policy.allowHttp
      ? 'url must be https or http'
      : 'url must be https (set ALLOW_HTTP_DESTINATIONS to allow http)'
  }
  if (parsed.username !== '' || parsed.password !== '') return 'url must not contain a username or password'
  // An empty fragment ("…/#") leaves hash empty but still serializes the '#'
  if (parsed.hash !== '' || parsed.href.endsWith('#')) return 'url must not have a fragment'
  const host = withoutBrackets(parsed.hostname)
  // Hostnames are checked at connect time, against the addresses they resolve to then
  if (isIP(host) === 0 || allowedHostChecker(policy)(host)) return undefined
  const reason = refusedAddressReason(host)
  return reason === undefined
    ? undefined
    : `url: ${reason} (list the host in DESTINATION_ALLOWED_HOSTS to allow it)`
}

/**
 * A `lookup` for net.connect and tls.connect that fails the connection when any address a host resolves to is
 * refused. It checks the addresses the socket will actually use, so DNS rebinding cannot slip past it.
 */
export function guardedLookup(policy: AddressPolicy): LookupFunction {
  const isAllowedHost = allowedHostChecker(policy)
  return (hostname, options, callback) => {
    // Always ask for every address, so the single-address form is refused whenever any answer would be
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) return callback(error, [])
      if (!isAllowedHost(hostname)) {
        for (const { address } of addresses) {
          const description = refusedAddressDescription(address)
          if (description !== undefined) {
            return callback(
              new DestinationRefusedError(`refused: ${hostname} resolved to ${address}, ${description}`),
              [],
            )
          }
        }
      }
      if (options.all === true) return callback(null, addresses)
      const first = addresses[0]
      if (first === undefined) {
        return callback(
          Object.assign(new Error(`${hostname} resolved to no address`), { code: 'ENOTFOUND' }),
          [],
        )
      }
      callback(null, first.address, first.family)
    })
  }
}

/**
 * The undici Agent that delivers to destinations: keep-alive pools per origin, no redirects followed, and each
 * connection refused unless its address is public or its host is allowed.
 */
export function createDestinationAgent(policy: AddressPolicy): Agent {
  const isAllowedHost = allowedHostChecker(policy)
  const connectResolved = buildConnector({ lookup: guardedLookup(policy), timeout: 10_000 })
  const connect: buildConnector.connector = (options, callback) => {
    const host = withoutBrackets(options.hostname)
    // net.connect skips `lookup` for an IP literal, so the literal is checked here instead
    const reason = isIP(host) !== 0 && !isAllowedHost(host) ? refusedAddressReason(host) : undefined
    if (reason !== undefined) return callback(new DestinationRefusedError(`refused: ${reason}`), null)
    connectResolved(options, callback)
  }
  return new Agent({ connect, keepAliveTimeout: 30_000 })
}
