import type { Provider } from '../src/provider.ts'
import { github } from './github.ts'
import { paypal } from './paypal.ts'
import { shopify } from './shopify.ts'
import { stripe } from './stripe.ts'
import { twilio } from './twilio.ts'

/** Every provider the gateway knows; adding one is one file and one line here. */
export const providers = { stripe, github, twilio, shopify, paypal } satisfies Record<string, Provider>

export type Providers = Readonly<Record<string, Provider>>
