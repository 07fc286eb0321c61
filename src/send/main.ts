import { parseCommandLine, usage } from './command-line.ts'
import { send } from './send.ts'

// npm run send -- <provider> <event> [--count N] [--rate R]: exit 0 when every delivery was accepted,
// 1 when one was not, 2 when nothing could be sent.
const commandLine = parseCommandLine(process.argv.slice(2))
if ('help' in commandLine) {
  process.stdout.write(`${usage}\n`)
} else if ('error' in commandLine) {
  process.stderr.write(`send: ${commandLine.error}\n\n${usage}\n`)
  process.exitCode = 2
} else {
  const result = await send({ ...commandLine, env: process.env })
  process.exitCode = result.exitCode
}
