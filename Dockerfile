FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# Fixes to dependencies, applied by npm ci (postinstall): see patches/README.md.
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY src ./src
COPY providers ./providers
COPY migrations ./migrations
# With no DATABASE_URL the gateway runs an embedded PostgreSQL with its data here: mount a volume on it to keep it.
RUN mkdir -p /app/.data && chown node:node /app/.data
VOLUME /app/.data
USER node
EXPOSE 3000
# Run node directly (not npm) so SIGTERM reaches the gateway and it shuts down gracefully.
CMD ["node", "--import", "tsx", "src/main.ts"]
