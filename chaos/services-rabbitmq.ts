import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ChaosServices } from './services.ts'
import {
  accepts,
  bounded,
  exitOf,
  isAlive,
  killGroup,
  run,
  spawnServer,
  timed,
  waitUntil,
  type Reaper,
  type Step,
} from './services-process.ts'

export interface RabbitmqServer {
  readonly url: string
  readonly node: string
  readonly controls: ChaosServices['rabbitmq']
  heal(): Promise<void>
  close(): Promise<void>
}

export interface RabbitmqOptions {
  readonly directory: string
  readonly ports: { readonly amqp: number; readonly distribution: number; readonly epmd: number }
  readonly reaper: Reaper
  readonly log: (line: string) => void
}

// The Debian package's /usr/sbin wrappers switch to the rabbitmq user and its shared cookie; these do not.
const bin = '/usr/lib/rabbitmq/bin'

/** Far below what an idle broker already uses, on any machine: the memory alarm goes off at once. */
const tinyWatermark = '0.000001'

/**
 * Files and environment that keep the node apart from the machine's broker: its own name, ports, cookie
 * (in its own HOME), epmd, directories and configuration; /etc/rabbitmq is never read.
 */
function nodeEnvironment(home: string, node: string, ports: RabbitmqOptions['ports']): NodeJS.ProcessEnv {
  writeFileSync(join(home, '.erlang.cookie'), randomBytes(24).toString('hex'), { mode: 0o400 })
  writeFileSync(join(home, 'rabbitmq-env.conf'), '')
  writeFileSync(join(home, 'enabled_plugins'), '[].\n')
  writeFileSync(join(home, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${ports.amqp}\n`)
  const inherited = Object.entries(process.env).filter(([name]) => !/^(RABBITMQ_|ERL_)/.test(name))
  return {
    ...Object.fromEntries(inherited),
    HOME: home,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(ports.amqp),
    RABBITMQ_DIST_PORT: String(ports.distribution),
    RABBITMQ_CONF_ENV_FILE: join(home, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: join(home, 'rabbitmq.conf'),
    RABBITMQ_CONFIG_FILES: join(home, 'conf.d'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(home, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(home, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(home, 'mnesia'),
    RABBITMQ_LOG_BASE: join(home, 'log'),
    RABBITMQ_PID_FILE: join(home, 'rabbitmq.pid'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    // rabbitmqctl's own node would otherwise take a port from the range shared with every other CLI call.
    RABBITMQ_CTL_DIST_PORT_MIN: '0',
    RABBITMQ_CTL_DIST_PORT_MAX: '0',
    ERL_EPMD_PORT: String(ports.epmd),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  }
}

/** A private node, `chaos-<pid>@localhost`, with its own epmd; guest/guest over loopback. */
export async function startRabbitmq({
  directory,
  ports,
  reaper,
  log,
}: RabbitmqOptions): Promise<RabbitmqServer> {
  const home = join(directory, 'rabbitmq')
  const node = `chaos-${process.pid}@localhost`
  const serverLog = join(home, 'server.log')
  const nodeLog = join(home, 'log', `${node}.log`)
  const step = (operation: string, timeoutMs = 30_000): Step => ({
    service: 'rabbitmq',
    operation,
    timeoutMs,
    logFiles: [serverLog, nodeLog],
  })
  mkdirSync(home)
  const env = nodeEnvironment(home, node, ports)
  const ctl = (step: Step, ...args: string[]) =>
    run(step, join(bin, 'rabbitmqctl'), ['-q', '-n', node, ...args], { env, cwd: home })
  const acceptsAmqp = () => accepts(ports.amqp)
  let epmd: ChildProcess | undefined
  let server: ChildProcess | undefined
  reaper.add(() => {
    killGroup(server)
    killGroup(epmd)
  })

  const startNode = async () => {
    epmd = spawnServer(
      'epmd',
      ['-port', String(ports.epmd), '-address', '127.0.0.1'],
      join(home, 'epmd.log'),
      { env },
    )
    await waitUntil(step('start epmd', 5000), () => accepts(ports.epmd), epmd)
    server = spawnServer(join(bin, 'rabbitmq-server'), [], serverLog, { env, cwd: home })
    await waitUntil(step('start', 90_000), acceptsAmqp, server)
  }
  const nodeRunning = () => server?.pid !== undefined && isAlive(server.pid, true)
  const stopNode = async () => {
    const stopping = [server, epmd].filter((child) => child !== undefined)
    for (const child of stopping) killGroup(child)
    await bounded(step('stop'), Promise.all(stopping.map(exitOf)))
  }
  // On from the moment we ask for it until switching it off has worked: heal skips a needless call.
  let alarmOn = false
  const memoryAlarm = async (on: boolean) => {
    alarmOn ||= on
    await ctl(
      step(`memory alarm ${on ? 'on' : 'off'}`),
      'set_vm_memory_high_watermark',
      on ? tinyWatermark : '0.4',
    )
    alarmOn = on
  }
  const startApp = async () => {
    await ctl(step('start_app'), 'start_app')
    await waitUntil(step('start_app: accept AMQP'), acceptsAmqp)
  }

  try {
    const started = await timed(startNode)
    log(`rabbitmq: node ${node} ready on 127.0.0.1:${ports.amqp} (start ${started.ms} ms)`)
  } catch (error) {
    await stopNode().catch(() => {})
    throw error
  }

  return {
    url: `amqp://guest:guest@127.0.0.1:${ports.amqp}`,
    node,
    controls: {
      async stopApp() {
        await ctl(step('stop_app'), 'stop_app')
      },
      startApp,
      async closeAllConnections() {
        await ctl(step('close_all_connections'), 'close_all_connections', '--global', 'chaos')
      },
      memoryAlarm,
    },
    async heal() {
      if (!nodeRunning()) {
        await stopNode()
        await startNode()
        alarmOn = false
        return
      }
      if (!(await acceptsAmqp())) await startApp()
      if (alarmOn) await memoryAlarm(false)
    },
    close: stopNode,
  }
}
