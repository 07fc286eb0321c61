import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'

export const paypalSigningHost = 'messageverificationcerts.paypal.com'

export interface Leaf {
  /** What PayPal serves at its cert URL: the leaf, then the intermediate (unless self-signed). */
  readonly chainPem: string
  readonly privateKey: string
}

export interface PayPalPki {
  /** The test root, as PAYPAL_CA_FILE. */
  readonly caFile: string
  leaf(options?: { host?: string; expired?: boolean; selfSigned?: boolean }): Leaf
  remove(): void
}

const opensslConfig = `
[req]
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
`

/**
 * A root (the CA file), an intermediate and leaves like PayPal's, made with openssl in a temporary directory:
 * Node can check certificates but not issue them.
 */
export function createPayPalPki(): PayPalPki {
  const dir = mkdtempSync(join(tmpdir(), 'paypal-pki-'))
  const path = (name: string) => join(dir, name)
  // Arguments never hold spaces here, so a command reads as one line.
  const openssl = (command: string) =>
    execFileSync('openssl', command.split(' '), { cwd: dir, stdio: 'pipe' })
  let serial = 1000

  const newKey = (name: string) => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    writeFileSync(path(`${name}.key`), pem)
    return pem
  }
  /** The config for one certificate; `[leaf]` is the last section, so a host lands in it. */
  const config = (name: string, host?: string) => {
    writeFileSync(path(`${name}.cnf`), opensslConfig + (host ? `subjectAltName = DNS:${host}\n` : ''))
    return `${name}.cnf`
  }
  const issue = (name: string, issuer: string, section: 'ca' | 'leaf', days: number, host?: string) => {
    const cnf = config(name, host)
    openssl(`req -new -key ${name}.key -subj /CN=${host ?? name} -config ${cnf} -out ${name}.csr`)
    openssl(
      `x509 -req -in ${name}.csr -CA ${issuer}.pem -CAkey ${issuer}.key -set_serial ${++serial} ` +
        `-days ${days} -extfile ${cnf} -extensions ${section} -out ${name}.pem`,
    )
    return readFileSync(path(`${name}.pem`), 'utf8')
  }

  newKey('test-paypal-root')
  openssl(
    `req -x509 -new -key test-paypal-root.key -subj /CN=test-paypal-root -days 3650 ` +
      `-config ${config('test-paypal-root')} -extensions ca -out test-paypal-root.pem`,
  )
  newKey('test-paypal-intermediate')
  const intermediatePem = issue('test-paypal-intermediate', 'test-paypal-root', 'ca', 3650)

  return {
    caFile: path('test-paypal-root.pem'),
    leaf({ host = paypalSigningHost, expired = false, selfSigned = false } = {}) {
      const name = `leaf-${randomBytes(4).toString('hex')}`
      const privateKey = newKey(name)
      if (selfSigned) {
        openssl(
          `req -x509 -new -key ${name}.key -subj /CN=${host} -days 30 ` +
            `-config ${config(name, host)} -extensions leaf -out ${name}.pem`,
        )
        return { chainPem: readFileSync(path(`${name}.pem`), 'utf8'), privateKey }
      }
      // `-days -1` makes a certificate whose validity ended a day ago.
      const leafPem = issue(name, 'test-paypal-intermediate', 'leaf', expired ? -1 : 30, host)
      return { chainPem: leafPem + intermediatePem, privateKey }
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

export interface CertServer {
  /** The origin to list in PAYPAL_CERT_ORIGINS, e.g. `http://127.0.0.1:41234`. */
  readonly origin: string
  /** Serves `body` at `/v1/notifications/certs/<id>` and returns its URL. */
  serve(id: string, body: string): string
  /** Answers a redirect at `/v1/notifications/certs/<id>` to `location`, and returns its URL. */
  redirect(id: string, location: string): string
  /** How many requests each path received. */
  readonly hits: Map<string, number>
  close(): Promise<void>
}

/** A local stand-in for PayPal's certificate host. */
export async function startCertServer(): Promise<CertServer> {
  const answers = new Map<string, { status: number; headers: Record<string, string>; body: string }>()
  const hits = new Map<string, number>()
  const server: Server = createServer((request, response) => {
    const path = request.url ?? '/'
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const answer = answers.get(path) ?? { status: 404, headers: {}, body: 'not found' }
    response.writeHead(answer.status, answer.headers).end(answer.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const at = (id: string) => `/v1/notifications/certs/${id}`
  return {
    origin,
    hits,
    serve(id, body) {
      answers.set(at(id), { status: 200, headers: { 'content-type': 'application/x-pem-file' }, body })
      return origin + at(id)
    },
    redirect(id, location) {
      answers.set(at(id), { status: 302, headers: { location }, body: '' })
      return origin + at(id)
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** PayPal's side for one test file: a test PKI, a cert server, and a leaf served at a cert URL. */
export interface PayPalSigning {
  readonly pki: PayPalPki
  readonly server: CertServer
  /** The leaf served at `certUrl`. */
  readonly leaf: Leaf
  readonly certUrl: string
  /** The PAYPAL_CERT_ORIGINS and PAYPAL_CA_FILE that trust this PKI and server. */
  readonly env: { PAYPAL_CERT_ORIGINS: string; PAYPAL_CA_FILE: string }
}

/** Sets PayPal's side up in beforeAll, serving a leaf as `certId`, and removes it in afterAll. */
export function usePayPalSigning(certId: string): PayPalSigning {
  let pki: PayPalPki | undefined
  let server: CertServer | undefined
  let leaf: Leaf | undefined
  let certUrl: string | undefined
  beforeAll(async () => {
    pki = createPayPalPki()
    server = await startCertServer()
    leaf = pki.leaf()
    certUrl = server.serve(certId, leaf.chainPem)
  })
  afterAll(async () => {
    await server?.close()
    pki?.remove()
  })
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('usePayPalSigning: ready only once beforeAll has run')
    return value
  }
  return {
    get pki() {
      return ready(pki)
    },
    get server() {
      return ready(server)
    },
    get leaf() {
      return ready(leaf)
    },
    get certUrl() {
      return ready(certUrl)
    },
    get env() {
      return { PAYPAL_CERT_ORIGINS: ready(server).origin, PAYPAL_CA_FILE: ready(pki).caFile }
    },
  }
}
