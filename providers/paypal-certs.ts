import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'

/** PayPal's certificate path, as in https://api.paypal.com/v1/notifications/certs/CERT-360caa42-… */
const certPathPrefix = '/v1/notifications/certs/'
/** The names PayPal's message-signing certificate carries: live, then sandbox. */
export const signingHosts = [
  'messageverificationcerts.paypal.com',
  'messageverificationcerts.sandbox.paypal.com',
]

const fetchTimeoutMs = 5000
const maxResponseBytes = 64 * 1024
const maxCachedUrls = 100
const maxIntermediates = 4

export interface CertificateOptions {
  /** PAYPAL_CERT_ORIGINS: the only origins a certificate is downloaded from. */
  readonly origins: readonly string[]
  /** PAYPAL_CA_FILE, or undefined for Node's root store. */
  readonly caFile: string | undefined
  /** Milliseconds since the epoch at which validity dates are checked. */
  readonly now: number
}

export type CertificateResult = { readonly certificate: X509Certificate } | { readonly reason: string }

/** Downloads by URL (leaf, then intermediates), shared by concurrent requests; failures are not kept. */
const downloads = new Map<string, Promise<readonly X509Certificate[]>>()
const rootsByFile = new Map<string, readonly X509Certificate[]>()

/** Forgets downloaded certificates and loaded roots (tests; a changed PAYPAL_CA_FILE). */
export function clearCertificateCache(): void {
  downloads.clear()
  rootsByFile.clear()
}

/** Reads PAYPAL_CA_FILE and parses PAYPAL_CERT_ORIGINS, throwing on a broken setup. */
export function checkCertificateSetup(origins: readonly string[], caFile: string | undefined): void {
  origins.forEach(originOf)
  trustedRoots(caFile)
}

/**
 * The certificate that signs a PayPal delivery, from the attacker-controlled `paypal-cert-url`: downloaded
 * only from an allowed origin, chained to a trusted root, within its dates, naming PayPal's signing host.
 * Refusals are values; an unreadable PAYPAL_CA_FILE is a broken setup and throws.
 */
export async function signingCertificate(
  certUrl: string,
  options: CertificateOptions,
): Promise<CertificateResult> {
  const roots = trustedRoots(options.caFile)
  const checked = allowedUrl(certUrl, options.origins)
  if ('reason' in checked) return checked
  let served: readonly X509Certificate[]
  try {
    served = await download(checked.url)
  } catch (error) {
    return {
      reason: `paypal: cannot fetch the certificate at ${checked.url.href}: ${(error as Error).message}`,
    }
  }
  const [leaf, ...intermediates] = served
  if (!leaf) return { reason: `paypal: no certificate at ${checked.url.href}` }
  if (!signingHosts.some((host) => leaf.checkHost(host, { wildcards: false }) !== undefined))
    return { reason: `paypal: certificate ${leaf.subject.replace(/\n/g, ', ')} names no PayPal signing host` }
  const untrusted = chainProblem(leaf, intermediates, roots, options.now)
  return untrusted ? { reason: `paypal: ${untrusted}` } : { certificate: leaf }
}

function allowedUrl(certUrl: string, origins: readonly string[]): { url: URL } | { reason: string } {
  let url: URL
  try {
    url = new URL(certUrl)
  } catch {
    return { reason: `paypal: cert url ${JSON.stringify(certUrl)} is not a URL` }
  }
  // Origins compare scheme, host and port: http passes only for an origin that is listed with http.
  if (!origins.some((origin) => originOf(origin) === url.origin))
    return { reason: `paypal: cert url origin ${url.origin} is not in PAYPAL_CERT_ORIGINS` }
  const name = url.pathname.startsWith(certPathPrefix) ? url.pathname.slice(certPathPrefix.length) : ''
  if (!/^[\w.-]+$/.test(name) || url.username || url.password || url.search || url.hash)
    return { reason: `paypal: cert url ${url.href} is not of the form ${certPathPrefix}<id>` }
  return { url }
}

function originOf(configured: string): string {
  try {
    return new URL(configured).origin
  } catch {
    throw new Error(`paypal: PAYPAL_CERT_ORIGINS entry ${JSON.stringify(configured)} is not a URL`)
  }
}

function download(url: URL): Promise<readonly X509Certificate[]> {
  const cached = downloads.get(url.href)
  if (cached) return cached
  const pending = fetchCertificates(url)
  downloads.set(url.href, pending)
  pending.catch(() => {
    if (downloads.get(url.href) === pending) downloads.delete(url.href)
  })
  // Bounded: distinct URLs come from request headers.
  const oldest = downloads.keys().next().value
  if (downloads.size > maxCachedUrls && oldest !== undefined) downloads.delete(oldest)
  return pending
}

async function fetchCertificates(url: URL): Promise<readonly X509Certificate[]> {
  // No redirects: the allowlist applies to the URL that answers, not only to the one asked.
  const response = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(fetchTimeoutMs) })
  const refuse = async (problem: string): Promise<never> => {
    await response.body?.cancel().catch(() => {})
    throw new Error(problem)
  }
  if (response.status !== 200) {
    const redirect = response.status >= 300 && response.status < 400
    return refuse(`answered ${response.status}${redirect ? ' (redirects are not followed)' : ''}`)
  }
  if (Number(response.headers.get('content-length') ?? 0) > maxResponseBytes)
    return refuse(`more than ${maxResponseBytes} bytes`)
  const chunks: Uint8Array[] = []
  let size = 0
  if (response.body) {
    for await (const chunk of response.body) {
      size += chunk.byteLength
      if (size > maxResponseBytes) throw new Error(`more than ${maxResponseBytes} bytes`)
      chunks.push(chunk)
    }
  }
  const certificates = certificatesIn(Buffer.concat(chunks, size).toString('utf8'))
  if (certificates.length === 0) throw new Error('the answer holds no PEM certificate')
  return certificates
}

function certificatesIn(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  return blocks.map((block) => new X509Certificate(block))
}

function trustedRoots(caFile: string | undefined): readonly X509Certificate[] {
  const key = caFile ?? ''
  let roots = rootsByFile.get(key)
  if (!roots) {
    roots = caFile ? readCaFile(caFile) : rootCertificates.map((pem) => new X509Certificate(pem))
    rootsByFile.set(key, roots)
  }
  return roots
}

function readCaFile(path: string): X509Certificate[] {
  let roots: X509Certificate[]
  try {
    roots = certificatesIn(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new Error(`paypal: cannot read PAYPAL_CA_FILE ${path}: ${(error as Error).message}`)
  }
  if (roots.length === 0) throw new Error(`paypal: PAYPAL_CA_FILE ${path} holds no PEM certificate`)
  return roots
}

const issuedBy = (certificate: X509Certificate, issuer: X509Certificate): boolean => {
  try {
    return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey)
  } catch {
    return false
  }
}

function datesProblem(certificate: X509Certificate, now: number): string | undefined {
  const subject = certificate.subject.replace(/\n/g, ', ')
  if (now < Date.parse(certificate.validFrom))
    return `certificate ${subject} is not valid before ${certificate.validFrom}`
  if (now > Date.parse(certificate.validTo)) return `certificate ${subject} expired on ${certificate.validTo}`
  return undefined
}

/** Walks leaf -> served intermediates -> a trusted root; undefined when the chain holds. */
function chainProblem(
  leaf: X509Certificate,
  served: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: number,
): string | undefined {
  const unused = [...served]
  let current = leaf
  for (let depth = 0; depth <= maxIntermediates; depth++) {
    const expired = datesProblem(current, now)
    if (expired) return expired
    const root = roots.find((candidate) => issuedBy(current, candidate))
    if (root) return datesProblem(root, now)
    const index = unused.findIndex((candidate) => candidate.ca && issuedBy(current, candidate))
    const issuer = unused[index]
    if (!issuer) return `certificate ${current.subject.replace(/\n/g, ', ')} does not chain to a trusted root`
    unused.splice(index, 1)
    current = issuer
  }
  return `certificate chain longer than ${maxIntermediates} intermediates`
}
