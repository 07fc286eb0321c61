import { boot } from './boot.ts'

// npm start: never with fake secrets (.env is read by --import ./src/load-env-file.ts when there is one).
await boot({ tryOut: false })
