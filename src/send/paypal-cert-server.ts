import { createServer } from 'node:http'

/** PayPal's path for signing certificates, which the gateway requires of every cert URL. */
const certPathPrefix = '/v1/notifications/certs/'

/** A local stand-in for PayPal's certificate host, up while `npm run send` sends. */
export interface CertServer {
  /** The `paypal-cert-url` to send. */
  readonly certUrl: string
  /** How many times the gateway downloaded the certificate. */
  readonly downloads: () => number
  close(): Promise<void>
}

/** Serves `pem` at `<origin>/v1/notifications/certs/<certId>`; `origin` is an http origin on this machine. */
export async function serveCertificate(origin: string, certId: string, pem: string): Promise<CertServer> {
  const url = new URL(origin)
  const path = certPathPrefix + certId
  let downloads = 0
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== path) {
      response.writeHead(404).end()
      return
    }
    downloads++
    response.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(pem)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `paypal: cannot serve the test certificate on ${url.origin}: the port is in use ` +
                '(is another `npm run send -- paypal` running?)'
            : `paypal: cannot serve the test certificate on ${url.origin}: ${error.message}`,
        ),
      ),
    )
    // The URL's hostname keeps an IPv6 address in brackets; listen() wants it bare.
    server.listen(Number(url.port || 80), url.hostname.replace(/^\[(.*)\]$/, '$1'), resolve)
  })
  return {
    certUrl: url.origin + path,
    downloads: () => downloads,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
