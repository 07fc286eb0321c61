import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../src/free-port.ts'
import { waitFor } from './services.ts'

export { freePort }

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface GatewayProcess {
  readonly child: ChildProcess
  /** The exit signal or code. */
  readonly exited: Promise<NodeJS.Signals | number | null>
  /** http://127.0.0.1:<port> */
  readonly base: string
  output(): string
}

/**
 * `npm start`'s command as a child process, answering /health (or, with ROLE=worker and no HTTP server,
 * once it logged "started"). `defer` gets its SIGKILL, for after the test whatever happens.
 */
export async function startGatewayProcess(
  env: Record<string, string>,
  defer: (cleanup: () => Promise<unknown>) => void,
): Promise<GatewayProcess> {
  const port = await freePort()
  let output = ''
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  )
  defer(async () => {
    child.kill('SIGKILL')
    await exited
  })
  const base = `http://127.0.0.1:${port}`
  const started = () =>
    env.ROLE === 'worker'
      ? Promise.resolve(output.includes('"msg":"started"'))
      : fetch(`${base}/health`).then(
          () => true,
          () => false,
        )
  try {
    await waitFor(started, 30_000, 100)
  } catch (error) {
    throw new Error(`the gateway process did not start: ${output}`, { cause: error })
  }
  return { child, exited, base, output: () => output }
}
