# syntax=docker/dockerfile:1
# GRINDER HA image: built once, run as both HA replicas (docker-compose.ha.yml).
#
# Stage 1 bundles src/ with the full dev toolchain; stage 2 carries only dist/ and the production
# node_modules (the OTLP exporters load from there when traces are exported), on the same small
# Node 24 LTS base, as the unprivileged `node` user.

ARG NODE_IMAGE=node:24.22.3-alpine

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first: the dependency layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY scripts/build.mjs ./scripts/build.mjs
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
# /healthz answers 200 while the election loop runs and 503 when it is stuck. BusyBox wget (part
# of the Alpine base) exits 1 on a 503 or no answer; a probe costs a few hundred kB for a few ms,
# where `node -e fetch(...)` started a whole Node process (50-80 MB, 0.2-0.6 s of CPU) every 5 s.
# The port follows GRINDER_METRICS_PORT like the service does.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
  CMD wget -q -T 2 -O /dev/null "http://127.0.0.1:${GRINDER_METRICS_PORT:-9090}/healthz" || exit 1
# SIGTERM (docker stop) lets the active replica release the lease, so the standby takes over
# without waiting for the TTL. SIGINT, SIGHUP and SIGQUIT do the same.
STOPSIGNAL SIGTERM
# --disable-sigusr1: the inspector cannot be opened by a signal even before the service has
# installed its own SIGUSR1 handler (it holds the Redis password).
CMD ["node", "--disable-sigusr1", "dist/main.js"]
