// ISO 4217 minor-unit exponents that differ from 2 (Stripe's zero-decimal and three-decimal lists, plus ISO).
const exponents: Readonly<Record<string, number>> = {
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  UYI: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  HUF: 2,
  TWD: 2,
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
}

export function currencyExponent(currency: string): number {
  return exponents[currency.toUpperCase()] ?? 2
}

export interface Money {
  readonly amount: number
  readonly amount_minor: number
  readonly currency: string
}

/** From an integer count of minor units (Stripe's `amount`: 1000 JPY is 1000, 10.00 USD is 1000). */
export function fromMinor(amountMinor: number, currency: string): Money {
  const code = currency.toUpperCase()
  return { amount: amountMinor / 10 ** currencyExponent(code), amount_minor: amountMinor, currency: code }
}

/** From a decimal string in major units (PayPal's `value`: "10.50"), without floating-point rounding. */
export function fromDecimal(value: string, currency: string): Money {
  const code = currency.toUpperCase()
  const exponent = currencyExponent(code)
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value.trim())
  if (!match) throw new RangeError(`not a decimal amount: ${JSON.stringify(value)}`)
  const [, sign, whole = '0', fraction = ''] = match
  if (fraction.replace(/0+$/, '').length > exponent) {
    throw new RangeError(`${value} has more decimals than ${code} allows (${exponent})`)
  }
  const minor = Number(whole + fraction.padEnd(exponent, '0').slice(0, exponent)) * (sign ? -1 : 1)
  return { amount: minor / 10 ** exponent, amount_minor: minor, currency: code }
}
