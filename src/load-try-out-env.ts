import { existsSync } from 'node:fs'

// Preloaded by npm run dev and npm run send: .env, or when there is none .env.example, whose fake secrets and
// admin token let a newcomer run the gateway and send to it with no set-up. Never by npm start: it must not
// run on them. Variables already in the environment win over the file.
if (existsSync('.env')) process.loadEnvFile('.env')
else if (existsSync('.env.example')) process.loadEnvFile('.env.example')
