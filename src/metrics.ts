type Labels = Readonly<Record<string, string>>

const labelText = (labels: Labels) => {
  const entries = Object.entries(labels)
  return entries.length === 0
    ? ''
    : `{${entries.map(([name, value]) => `${name}="${value.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`).join(',')}}`
}

/** Counters in memory, rendered in the Prometheus text format. */
export class Metrics {
  private readonly counters = new Map<string, { help: string; values: Map<string, number> }>()
  private readonly gauges = new Map<
    string,
    { help: string; read: () => Promise<Record<string, number>> | Record<string, number>; label: string }
  >()

  count(name: string, help: string, labels: Labels = {}, by = 1): void {
    let counter = this.counters.get(name)
    if (!counter) this.counters.set(name, (counter = { help, values: new Map() }))
    const key = labelText(labels)
    counter.values.set(key, (counter.values.get(key) ?? 0) + by)
  }

  /** A gauge read when scraped; `read` returns label value -> number for the one label `label`. */
  gauge(
    name: string,
    help: string,
    label: string,
    read: () => Promise<Record<string, number>> | Record<string, number>,
  ): void {
    this.gauges.set(name, { help, read, label })
  }

  async render(): Promise<string> {
    const lines: string[] = []
    for (const [name, { help, values }] of this.counters) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
      for (const [labels, value] of values) lines.push(`${name}${labels} ${value}`)
    }
    for (const [name, { help, read, label }] of this.gauges) {
      const values = await Promise.resolve(read()).catch(() => undefined)
      if (!values) continue
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`)
      for (const [value, number] of Object.entries(values))
        lines.push(`${name}${labelText({ [label]: value })} ${number}`)
    }
    return lines.join('\n') + '\n'
  }
}
