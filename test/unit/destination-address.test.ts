import { createServer, type Server } from 'node:http'
import { isIP, type AddressInfo, type LookupFunction } from 'node:net'
import type { LookupAddress } from 'node:dns'
import { request, type Agent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createDestinationAgent,
  destinationUrlProblem,
  guardedLookup,
  refusedAddressReason,
  type AddressPolicy,
} from '../../src/destinations/address.ts'

const strict: AddressPolicy = { allowHttp: false, allowedHosts: [] }
const refusal = { code: 'EDESTINATIONREFUSED' }

describe('refusedAddressReason', () => {
  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])(
    'allows %s as public',
    (address) => {
      expect(refusedAddressReason(address)).toBeUndefined()
    },
  )

  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['192.0.2.1', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fc00::1', 'unique local'],
    ['fd12::1', 'unique local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::a00:1', 'NAT64'],
    ['2002:a00:1::1', '6to4'],
    ['::7f00:1', 'unassigned'],
  ])('refuses %s as %s', (address, kind) => {
    expect(refusedAddressReason(address)).toMatch(
      new RegExp(`^${address.replaceAll('.', '\\.')} is an? ${kind}`),
    )
  })

  it('says an IPv4-mapped address is refused for the address it maps', () => {
    expect(refusedAddressReason('::ffff:127.0.0.1')).toBe(
      '::ffff:127.0.0.1 is a loopback address in IPv4-mapped form',
    )
  })

  it.each(['localhost', '', '127.1', '0x7f000001', '1.2.3.4.5'])(
    'refuses %j as not an IP address',
    (text) => {
      expect(refusedAddressReason(text)).toBe(`${text} is not an IP address`)
    },
  )
})

describe('destinationUrlProblem', () => {
  it('accepts an https URL with a hostname, which is checked only at connect time', () => {
    expect(destinationUrlProblem('https://hooks.example.com/in?x=1', strict)).toBeUndefined()
    expect(destinationUrlProblem('https://localhost/in', strict)).toBeUndefined()
  })

  it('accepts a public IP literal', () => {
    expect(destinationUrlProblem('https://8.8.8.8/in', strict)).toBeUndefined()
    expect(destinationUrlProblem('https://[2606:4700:4700::1111]/in', strict)).toBeUndefined()
  })

  it('refuses http unless ALLOW_HTTP_DESTINATIONS is set', () => {
    expect(destinationUrlProblem('http://hooks.example.com/in', strict)).toBe(
      'url must be https (set ALLOW_HTTP_DESTINATIONS to allow http)',
    )
    expect(
      destinationUrlProblem('http://hooks.example.com/in', { ...strict, allowHttp: true }),
    ).toBeUndefined()
  })

  it('refuses other protocols even when http is allowed', () => {
    expect(destinationUrlProblem('ftp://hooks.example.com/in', { ...strict, allowHttp: true })).toBe(
      'url must be https or http',
    )
  })

  it('refuses credentials in the URL', () => {
    expect(destinationUrlProblem('https://user:secret@hooks.example.com/in', strict)).toMatch(
      /username or password/,
    )
    expect(destinationUrlProblem('https://user@hooks.example.com/in', strict)).toMatch(/username or password/)
  })

  it('refuses a fragment, even an empty one', () => {
    expect(destinationUrlProblem('https://hooks.example.com/in#part', strict)).toBe(
      'url must not have a fragment',
    )
    expect(destinationUrlProblem('https://hooks.example.com/in#', strict)).toBe(
      'url must not have a fragment',
    )
  })

  it('refuses a private IP literal and says how to allow it', () => {
    expect(destinationUrlProblem('https://127.0.0.1/in', strict)).toBe(
      'url: 127.0.0.1 is a loopback address (list the host in DESTINATION_ALLOWED_HOSTS to allow it)',
    )
    expect(destinationUrlProblem('https://[fd00::1]/in', strict)).toMatch(
      /^url: fd00::1 is a unique local address/,
    )
  })

  it('refuses a private IP literal spelled in a form the URL parser normalizes', () => {
    expect(destinationUrlProblem('https://0x7f000001/in', strict)).toMatch(/^url: 127\.0\.0\.1 is a loopback/)
    expect(destinationUrlProblem('https://169.254.43518/', strict)).toMatch(
      /^url: 169\.254\.169\.254 is a link-local/,
    )
  })

  it('accepts a private IP literal listed in allowedHosts, with or without brackets', () => {
    expect(
      destinationUrlProblem('https://10.0.0.5/in', { ...strict, allowedHosts: ['10.0.0.5'] }),
    ).toBeUndefined()
    expect(destinationUrlProblem('https://[::1]/in', { ...strict, allowedHosts: ['::1'] })).toBeUndefined()
    expect(destinationUrlProblem('https://[::1]/in', { ...strict, allowedHosts: ['[::1]'] })).toBeUndefined()
    expect(
      destinationUrlProblem('https://[0::1]/in', { ...strict, allowedHosts: ['0:0:0:0:0:0:0:1'] }),
    ).toBeUndefined()
  })

  it('refuses a private IP literal when only another host is allowed', () => {
    expect(destinationUrlProblem('https://10.0.0.6/in', { ...strict, allowedHosts: ['10.0.0.5'] })).toMatch(
      /10\.0\.0\.6 is a private address/,
    )
  })

  it.each(['not a url', '/relative/path', '', 'https://'])('refuses %j as not an absolute URL', (url) => {
    expect(destinationUrlProblem(url, strict)).toBe('url must be an absolute URL')
  })
})

type LookupResult = {
  error: NodeJS.ErrnoException | null
  address: string | LookupAddress[]
  family?: number
}

function callLookup(lookup: LookupFunction, hostname: string, all: boolean): Promise<LookupResult> {
  return new Promise((resolve) => {
    lookup(hostname, all ? { all: true } : {}, (error, address, family) =>
      resolve(family === undefined ? { error, address } : { error, address, family }),
    )
  })
}

describe('guardedLookup', () => {
  it('refuses localhost in the all-addresses form net uses for happy eyeballs', async () => {
    const { error } = await callLookup(guardedLookup(strict), 'localhost', true)
    expect(error).toMatchObject(refusal)
    expect(error?.message).toMatch(/^refused: localhost resolved to (127\.0\.0\.1|::1), a loopback address$/)
  })

  it('refuses localhost in the single-address form', async () => {
    const { error } = await callLookup(guardedLookup(strict), 'localhost', false)
    expect(error).toMatchObject(refusal)
    expect(error?.message).toMatch(/^refused: localhost resolved to/)
  })

  it('answers every address for an allowed host in the all-addresses form', async () => {
    const { error, address } = await callLookup(
      guardedLookup({ ...strict, allowedHosts: ['LOCALHOST'] }),
      'localhost',
      true,
    )
    expect(error).toBeNull()
    expect(Array.isArray(address) && address.length > 0).toBe(true)
    for (const entry of address as LookupAddress[]) expect(isIP(entry.address)).toBe(entry.family)
  })

  it('answers one address and its family for an allowed host in the single-address form', async () => {
    const { error, address, family } = await callLookup(
      guardedLookup({ ...strict, allowedHosts: ['localhost'] }),
      'localhost',
      false,
    )
    expect(error).toBeNull()
    expect(typeof address).toBe('string')
    expect(isIP(address as string)).toBe(family)
  })
})

describe('createDestinationAgent', () => {
  let server: Server
  let port: number
  const agents: Agent[] = []

  function agentFor(allowedHosts: string[]): Agent {
    const agent = createDestinationAgent({ allowHttp: true, allowedHosts })
    agents.push(agent)
    return agent
  }

  beforeAll(async () => {
    server = createServer((_req, res) => res.end('delivered'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.close()))
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('refuses a loopback IP literal before connecting', async () => {
    await expect(request(`http://127.0.0.1:${port}/`, { dispatcher: agentFor([]) })).rejects.toMatchObject({
      ...refusal,
      message: 'refused: 127.0.0.1 is a loopback address',
    })
  })

  it('refuses a bracketed IPv6 loopback literal', async () => {
    await expect(request(`http://[::1]:${port}/`, { dispatcher: agentFor([]) })).rejects.toMatchObject({
      ...refusal,
      message: 'refused: ::1 is a loopback address',
    })
  })

  it('refuses a hostname that resolves to loopback', async () => {
    await expect(request(`http://localhost:${port}/`, { dispatcher: agentFor([]) })).rejects.toMatchObject({
      ...refusal,
      message: expect.stringMatching(/^refused: localhost resolved to .*, a loopback address$/),
    })
  })

  it('delivers to an IP literal listed in allowedHosts', async () => {
    const response = await request(`http://127.0.0.1:${port}/`, { dispatcher: agentFor(['127.0.0.1']) })
    expect(response.statusCode).toBe(200)
    expect(await response.body.text()).toBe('delivered')
  })

  it('delivers to a hostname listed in allowedHosts', async () => {
    const response = await request(`http://localhost:${port}/`, { dispatcher: agentFor(['localhost']) })
    expect(response.statusCode).toBe(200)
    expect(await response.body.text()).toBe('delivered')
  })

  it('does not let an allowed hostname open its IP literal', async () => {
    await expect(
      request(`http://127.0.0.1:${port}/`, { dispatcher: agentFor(['localhost']) }),
    ).rejects.toMatchObject(refusal)
  })
})
