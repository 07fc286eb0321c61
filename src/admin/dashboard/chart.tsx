const colors = ['#2f6fdb', '#d9822b', '#2aa876', '#b8408f', '#7a5af5', '#c23b3b']

/**
 * Webhooks received per minute over the last hour, a line per provider, as an SVG the server draws: no
 * script, readable in any browser.
 */
export function RatesChart(props: {
  rates: readonly { provider: string; minute: Date; count: number }[]
  now?: Date
}) {
  const width = 720
  const height = 180
  const left = 40
  const bottom = 20
  const now = props.now ?? new Date()
  const start = Math.floor(now.getTime() / 60_000) * 60_000 - 59 * 60_000
  const providers = [...new Set(props.rates.map((rate) => rate.provider))].sort()
  const max = Math.max(1, ...props.rates.map((rate) => rate.count))
  const x = (minute: number) => left + ((minute - start) / (59 * 60_000)) * (width - left - 10)
  const y = (count: number) => height - bottom - (count / max) * (height - bottom - 10)
  const series = providers.map((provider) => {
    const counts = new Map(
      props.rates
        .filter((rate) => rate.provider === provider)
        .map((rate) => [new Date(rate.minute).getTime(), rate.count]),
    )
    const points = Array.from({ length: 60 }, (_, index) => {
      const minute = start + index * 60_000
      return `${x(minute).toFixed(1)},${y(counts.get(minute) ?? 0).toFixed(1)}`
    })
    return { provider, points: points.join(' ') }
  })
  return (
    <figure style="margin:0">
      <svg
        xmlns="http://www.w3.org/2000/svg"
        viewBox={`0 0 ${width} ${height}`}
        width={width}
        height={height}
        role="img"
        aria-label="Webhooks received per minute, last hour"
        style="background:#fff;border:1px solid #e3e6ec"
      >
        <line x1={left} y1={height - bottom} x2={width - 10} y2={height - bottom} stroke="#c7ccd6" />
        <line x1={left} y1={10} x2={left} y2={height - bottom} stroke="#c7ccd6" />
        <text x={4} y={16} font-size="11" fill="#596275">
          {max}/min
        </text>
        <text x={left} y={height - 4} font-size="11" fill="#596275">
          -60 min
        </text>
        <text x={width - 40} y={height - 4} font-size="11" fill="#596275">
          now
        </text>
        {series.map((line, index) => (
          <polyline
            points={line.points}
            fill="none"
            stroke={colors[index % colors.length]}
            stroke-width="2"
            data-provider={line.provider}
          />
        ))}
      </svg>
      <figcaption>
        {series.length === 0
          ? 'No webhook received in the last hour.'
          : series.map((line, index) => (
              <span style={`color:${colors[index % colors.length]};margin-right:14px`}>
                ■ {line.provider}
              </span>
            ))}
      </figcaption>
    </figure>
  )
}
