import type { Provider } from '../src/provider.ts'
import { github } from './github.ts'
import { stripe } from './stripe.ts'

/** Every provider the gateway knows; adding one is one file and one line here. */
export const providers = { stripe, github } satisfies Record<string, Provider>

export type Providers = Readonly<Record<string, Provider>>
