import { boot } from './boot.ts'

// npm run dev: npm start for a try-out (.env, or .env.example's fake secrets and admin token when there is no
// .env, read by --import ./src/load-try-out-env.ts), ending its start with the dashboard's URL and token.
await boot({ tryOut: true })
