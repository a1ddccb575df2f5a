# syntax=docker/dockerfile:1
# GRINDER HA image: built once, run as both HA replicas (docker-compose.ha.yml).
#
# Stage 1 compiles TypeScript with the full dev toolchain; stage 2 carries only dist/ and the
# production node_modules, on the same small Node 20 LTS base, as the unprivileged `node` user.

ARG NODE_IMAGE=node:20.20.2-alpine

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first: the dependency layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/copy-assets.mjs ./scripts/copy-assets.mjs
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    GRINDER_METRICS_PORT=9090 \
    GRINDER_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Read-only for the service user: it needs to read its code, never to write it.
USER node
EXPOSE 9090
# /healthz answers 200 while the election loop runs and 503 when it is stuck. Node's own fetch
# (no curl in this image); the port follows GRINDER_METRICS_PORT like the service does.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.GRINDER_METRICS_PORT||9090)+'/healthz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM (docker stop) lets the active replica release the lease, so the standby takes over
# without waiting for the TTL.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
