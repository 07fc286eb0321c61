import { isAbsolute, relative, resolve } from 'node:path'
import type { Config } from '../config.ts'
import { serveCertificate, type CertServer } from './paypal-cert-server.ts'
import { paypalTestCertificate } from './paypal-test-certificate.ts'

/** Where the test certificate is served when PAYPAL_CERT_ORIGINS lists no http origin on this machine. */
export const defaultCertOrigin = 'http://127.0.0.1:3099'

export interface PayPalSetup {
  readonly server: CertServer
  readonly privateKey: string
  /** The two gateway variables that make it trust the test certificate, explained. */
  readonly setupHint: string
  /** Whether the hint was already printed, because npm run send's own variables do not trust the certificate. */
  readonly hintShown: boolean
}

/**
 * PayPal verification downloads the certificate named in `paypal-cert-url` and checks it chains to a trusted
 * root, so a local try-out serves a test certificate here, from a test CA the gateway trusts only when its
 * PAYPAL_CERT_ORIGINS and PAYPAL_CA_FILE say so.
 */
export async function setUpPayPal(
  config: Config,
  stateDir: string,
  warn: (text: string) => void,
): Promise<PayPalSetup> {
  const certificate = paypalTestCertificate(stateDir)
  const listed = config.paypal.certOrigins.find(isLocalHttpOrigin)
  const origin = listed ? new URL(listed).origin : defaultCertOrigin
  const server = await serveCertificate(origin, certificate.certId, certificate.leafPem)
  const caFile = shownPath(certificate.caFile)
  const setupHint = [
    'paypal: the gateway downloads the certificate named in paypal-cert-url only from PAYPAL_CERT_ORIGINS,',
    'and trusts it only if it chains to PAYPAL_CA_FILE. For a local try-out, set these on the gateway',
    '(in .env, which npm start reads too) and restart it:',
    `  PAYPAL_CERT_ORIGINS=${origin}`,
    `  PAYPAL_CA_FILE=${caFile}`,
    "With them it trusts npm run send's test CA instead of PayPal's real certificates: local try-outs only.",
  ].join('\n')
  const trusted =
    listed !== undefined &&
    config.paypal.caFile !== undefined &&
    resolve(config.paypal.caFile) === resolve(certificate.caFile)
  if (certificate.createdCa)
    warn(
      `paypal: made a test CA for local try-outs in ${caFile} (a gateway already running must be restarted)`,
    )
  if (!trusted) warn(setupHint)
  return { server, privateKey: certificate.privateKey, setupHint, hintShown: !trusted }
}

function isLocalHttpOrigin(origin: string): boolean {
  if (!URL.canParse(origin)) return false
  const url = new URL(origin)
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)
}

/** A path relative to the working directory when it lies inside it. */
function shownPath(path: string): string {
  const inside = relative(process.cwd(), path)
  return inside && !inside.startsWith('..') && !isAbsolute(inside) ? inside : path
}
