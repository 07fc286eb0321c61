import { readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import type postgres from 'postgres'

/**
 * What the bench reads besides the answers: CPU time and memory from /proc, commits and rows from
 * Postgres, and a description of the machine.
 */

// USER_HZ: /proc reports CPU time in these ticks on every Linux architecture Node runs on.
const ticksPerSecond = 100

/** The fields of /proc/<pid>/stat after the parenthesised command name (which may contain spaces). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** User plus system CPU of a process, in ms; 0 when it is gone. */
export function processCpuMs(pid: number): number {
  const fields = statFields(pid)
  // utime and stime are fields 14 and 15 of stat, 12th and 13th after the command.
  return fields ? ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond : 0
}

/** Peak resident memory (VmHWM) of a process, in bytes, or undefined when it is gone. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
    return match ? Number(match[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/**
 * CPU of every Postgres server process on the machine, in ms: the postmaster with the CPU of its children
 * that have exited (cutime + cstime, so a backend that ends during the window still counts), plus every
 * live child (backends, walwriter, checkpointer, autovacuum). Undefined when the postmaster is not visible
 * in this /proc, e.g. Postgres in a container.
 */
export function postgresCpuMs(postmasterPid: number | undefined): number | undefined {
  if (postmasterPid === undefined) return undefined
  const postmaster = statFields(postmasterPid)
  if (!postmaster) return undefined
  // cutime and cstime are fields 16 and 17 of stat.
  let ticks =
    Number(postmaster[11]) + Number(postmaster[12]) + Number(postmaster[13]) + Number(postmaster[14])
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const fields = statFields(Number(entry))
    // ppid is field 4 of stat, the 2nd after the command.
    if (fields && Number(fields[1]) === postmasterPid) ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks * 1000) / ticksPerSecond
}

/** The postmaster's pid: the parent of this connection's backend, if that backend is visible here. */
export async function findPostmaster(sql: postgres.Sql): Promise<number | undefined> {
  const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`
  const fields = row ? statFields(row.pid) : undefined
  return fields ? Number(fields[1]) : undefined
}

/**
 * Installs a counter of the transactions that insert into `table`: a statement trigger that bumps a
 * sequence once per transaction (a transaction-local setting remembers it has counted). A sequence takes
 * no row lock and is visible at once, unlike pg_stat_database.xact_commit, which busy backends report
 * once a second and idle ones up to 10 s late. A transaction that inserts and then rolls back counts too.
 */
export async function installCommitCounter(sql: postgres.Sql, table: string): Promise<void> {
  await sql.unsafe(`
    CREATE SEQUENCE bench_commits;
    CREATE FUNCTION bench_count_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('bench.counted', true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('bench.counted', 'yes', true);
        PERFORM nextval('bench_commits');
      END IF;
      RETURN NULL;
    END
    $$;
    CREATE TRIGGER bench_count_commit AFTER INSERT ON ${table}
      FOR EACH STATEMENT EXECUTE FUNCTION bench_count_commit();`)
}

/** Transactions counted so far and rows in `table`. */
export async function storageCounts(
  sql: postgres.Sql,
  table: string,
): Promise<{ commits: number; rows: number }> {
  const [row] = await sql.unsafe<{ commits: number; rows: number }[]>(`
    SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_commits)::int AS commits,
           (SELECT count(*) FROM ${table})::int AS rows`)
  return { commits: row?.commits ?? 0, rows: row?.rows ?? 0 }
}

export interface Machine {
  readonly cpus: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly kernel: string
  readonly node: string
  readonly postgres: string
  readonly postgresSettings: string
  readonly redis: string
  readonly rabbitmq: string
  readonly loadBefore: readonly number[]
  loadAfter?: readonly number[]
}

export async function describeMachine(
  sql: postgres.Sql,
  versions: { readonly redis: string; readonly rabbitmq: string },
): Promise<Machine> {
  const [pg] = await sql<{ version: string; settings: string }[]>`
    SELECT current_setting('server_version') AS version,
           format('synchronous_commit=%s fsync=%s shared_buffers=%s default_toast_compression=%s',
                  current_setting('synchronous_commit'), current_setting('fsync'),
                  current_setting('shared_buffers'), current_setting('default_toast_compression')) AS settings`
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: pg?.version ?? 'unknown',
    postgresSettings: pg?.settings ?? '',
    ...versions,
    loadBefore: os.loadavg(),
  }
}

/**
 * How many times a process's main thread has gone to sleep and been woken so far (its voluntary context
 * switches: each a wait in epoll for the next event), or undefined when it is gone.
 */
export function mainThreadWakes(pid: number): number | undefined {
  try {
    const match = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(
      readFileSync(`/proc/${pid}/task/${pid}/status`, 'latin1'),
    )
    return match ? Number(match[1]) : undefined
  } catch {
    return undefined
  }
}

/** CPU of each thread of a process by thread name (the main thread, V8's workers, libuv's pool...), in ms. */
export function threadCpuMs(pid: number): Map<string, number> {
  const byName = new Map<string, number>()
  let tasks: string[] = []
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return byName
  }
  for (const tid of tasks) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').trim()
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1')
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ms = ((Number(after[11]) + Number(after[12])) * 1000) / ticksPerSecond
      const label = Number(tid) === pid ? 'main' : name
      byName.set(label, (byName.get(label) ?? 0) + ms)
    } catch {
      // The thread ended meanwhile.
    }
  }
  return byName
}
