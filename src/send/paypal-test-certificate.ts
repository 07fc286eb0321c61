import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, randomInt, X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** The name PayPal's live message-signing certificate carries, which the gateway checks. */
const signingHost = 'messageverificationcerts.paypal.com'
const leafDays = 365
/** A leaf closer than this to its end is issued again (by the same CA, so the gateway keeps trusting it). */
const renewWithinMs = 24 * 60 * 60 * 1000

/** A local stand-in for PayPal's signing certificate, issued by a test CA the gateway trusts only if told to. */
export interface PayPalTestCertificate {
  /** The test CA's certificate: what PAYPAL_CA_FILE must name for the gateway to trust the leaf. */
  readonly caFile: string
  /** The leaf certificate (PEM), served at the cert URL. */
  readonly leafPem: string
  readonly privateKey: string
  /** The last part of the cert URL; it changes with the leaf, so a gateway never uses a stale cached one. */
  readonly certId: string
  /** True when the CA was made just now: a gateway already running must be restarted to read it. */
  readonly createdCa: boolean
}

const opensslConfig = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:${signingHost}
`

/**
 * The test CA and leaf kept in `<stateDir>/paypal`, made on first use with openssl (Node checks certificates
 * but cannot issue them); the leaf is issued again when it nears its end.
 */
export function paypalTestCertificate(stateDir: string, now = Date.now()): PayPalTestCertificate {
  const dir = join(stateDir, 'paypal')
  const file = (name: string) => join(dir, name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(file('openssl.cnf'), opensslConfig)

  const createdCa = !existsSync(file('ca.pem')) || !existsSync(file('ca.key'))
  if (createdCa) {
    writeKey(file('ca.key'))
    openssl(dir, [
      ...['req', '-x509', '-new', '-key', 'ca.key', '-days', '3650', '-config', 'openssl.cnf'],
      ...['-subj', '/CN=webhook-gateway npm run send test CA (not PayPal)', '-extensions', 'ca'],
      ...['-out', 'ca.pem'],
    ])
  }
  const ca = new X509Certificate(readFileSync(file('ca.pem')))
  if (!existsSync(file('leaf.pem')) || !existsSync(file('leaf.key')) || !usable(file('leaf.pem'), ca, now)) {
    writeKey(file('leaf.key'))
    openssl(dir, [
      ...['req', '-new', '-key', 'leaf.key', '-subj', `/CN=${signingHost}`, '-config', 'openssl.cnf'],
      ...['-out', 'leaf.csr'],
    ])
    openssl(dir, [
      ...['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key'],
      ...['-set_serial', String(randomInt(1, 2 ** 47)), '-days', String(leafDays)],
      ...['-extfile', 'openssl.cnf', '-extensions', 'leaf', '-out', 'leaf.pem'],
    ])
    rmSync(file('leaf.csr'), { force: true })
  }
  const leafPem = readFileSync(file('leaf.pem'), 'utf8')
  const fingerprint = new X509Certificate(leafPem).fingerprint256.replaceAll(':', '').slice(0, 16)
  return {
    caFile: file('ca.pem'),
    leafPem,
    privateKey: readFileSync(file('leaf.key'), 'utf8'),
    certId: `CERT-${fingerprint.toLowerCase()}`,
    createdCa,
  }
}

function usable(leafFile: string, ca: X509Certificate, now: number): boolean {
  try {
    const leaf = new X509Certificate(readFileSync(leafFile))
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && Date.parse(leaf.validTo) - now > renewWithinMs
  } catch {
    return false
  }
}

function writeKey(path: string): void {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
}

function openssl(cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: 'pipe' })
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer }
    if (failure.code === 'ENOENT')
      throw new Error(
        'paypal: making the local test certificate needs the openssl command, which is not installed',
      )
    throw new Error(
      `paypal: openssl ${args[0]} failed: ${failure.stderr?.toString().trim() || failure.message}`,
    )
  }
}
