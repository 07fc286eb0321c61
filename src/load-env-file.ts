import { existsSync } from 'node:fs'

// Preloaded by npm start and npm run migrate (node --import): .env when there is one. Variables already in the
// environment win over the file, as with node --env-file. process.loadEnvFile is in every Node the project
// supports (20.12+), unlike --env-file-if-exists (a later 20.x backport).
if (existsSync('.env')) process.loadEnvFile('.env')
