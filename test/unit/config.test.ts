import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'

describe('loadConfig', () => {
  it('uses the contract’s defaults', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      role: 'all',
      // Unset: the embedded PostgreSQL under .data, no Redis, no broker.
      databaseUrl: undefined,
      embeddedDataDir: '.data',
      redisUrl: undefined,
      amqpUrl: undefined,
      exchange: 'webhooks',
      publicBaseUrl: undefined,
      adminToken: undefined,
      logLevel: 'info',
      retryDelaysSeconds: [5, 30, 300],
    })
    expect(config.maxBodyBytes).toEqual({ default: 1048576, github: 26214400 })
    expect(config.paypal.certOrigins).toEqual([
      'https://api.paypal.com',
      'https://api-m.paypal.com',
      'https://api.sandbox.paypal.com',
      'https://api-m.sandbox.paypal.com',
    ])
    expect(Object.values(config.secrets).every((secrets) => secrets.length === 0)).toBe(true)
  })

  it('reads every secret variable as a comma-separated list for rotation', () => {
    const config = loadConfig({ STRIPE_WEBHOOK_SECRET: 'whsec_new, whsec_old', GITHUB_WEBHOOK_SECRET: 'one' })
    expect(config.secrets.stripe).toEqual(['whsec_new', 'whsec_old'])
    expect(config.secrets.github).toEqual(['one'])
    expect(config.secrets.twilio).toEqual([])
  })

  it('drops a trailing slash from PUBLIC_BASE_URL', () => {
    expect(loadConfig({ PUBLIC_BASE_URL: 'https://hooks.example.com/' }).publicBaseUrl).toBe(
      'https://hooks.example.com',
    )
  })

  it('refuses a broken setup at startup with the variable named', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/)
    expect(() => loadConfig({ ROLE: 'both' })).toThrow(/ROLE/)
    expect(() => loadConfig({ RETRY_DELAYS_SECONDS: '5,soon' })).toThrow(/RETRY_DELAYS_SECONDS/)
    expect(() => loadConfig({ PUBLIC_BASE_URL: 'hooks.example.com' })).toThrow(/PUBLIC_BASE_URL/)
  })

  it('treats an empty variable as unset', () => {
    const config = loadConfig({ PUBLIC_BASE_URL: '', STRIPE_WEBHOOK_SECRET: '', PORT: '' })
    expect(config.publicBaseUrl).toBeUndefined()
    expect(config.secrets.stripe).toEqual([])
    expect(config.port).toBe(3000)
  })

  it('returns a frozen object', () => {
    expect(Object.isFrozen(loadConfig({}))).toBe(true)
  })
})
