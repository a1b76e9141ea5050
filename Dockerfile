# Build stage: compile TypeScript with the dev dependencies, then drop them so the runtime stage
# can take node_modules as it is.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The locked versions, exactly (test/e2e/install.test.ts runs these build steps and starts the
# daemon from the pruned tree). Installing once and pruning keeps build and runtime on one tree.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
    && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: node, the compiled daemon, production dependencies, and redis-server for the
# embedded queue store.
FROM node:24-bookworm-slim
# A fixed uid/gid, so a host directory bind-mounted at /var/lib/impulse can be chowned to it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 impulse \
    && useradd --system --uid 10001 --gid impulse --home-dir /var/lib/impulse --no-create-home \
       --shell /usr/sbin/nologin impulse \
    && install -d -o impulse -g impulse -m 0700 /var/lib/impulse \
    && printf '#!/bin/sh\nexec node /opt/impulse/dist/src/cli/index.js "$@"\n' > /usr/local/bin/impulse \
    && chmod 0755 /usr/local/bin/impulse
WORKDIR /opt/impulse
COPY package.json package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# The commented reference of every key, to start a configuration of one's own from, and the
# JSON Schema its first line names for editors.
COPY config/impulse.yaml config/impulse.schema.json ./config/
# The image's own configuration differs from config/impulse.yaml only where a container needs
# it to: listeners on all interfaces (127.0.0.1 inside a container is unreachable through a
# published port), and Redis data and the admin socket in the state volume (paths relative to
# /etc/impulse would not be writable). relay_from keeps its loopback-only default, so until a
# configuration naming the upstream MTA's addresses is mounted over this one, injected mail is
# refused with 554 5.7.1 (logged as relay_refused) instead of the container being an open relay.
# check-config fails the build if this no longer matches the schema.
RUN mkdir -p /etc/impulse \
    && printf '%s\n' \
       '# Container defaults; mount your own configuration over this file (docs/operations.md).' \
       'redis: { embedded: true, dir: /var/lib/impulse/redis }' \
       'listen: [{ address: 0.0.0.0, port: 2525 }]' \
       'admin: { socket: /var/lib/impulse/impulse.sock }' \
       'metrics: { listen: "0.0.0.0:9725" }' \
       > /etc/impulse/impulse.yaml \
    && impulse check-config -c /etc/impulse/impulse.yaml > /dev/null
USER impulse
VOLUME ["/var/lib/impulse"]
# 2525: SMTP intake. 9725: /metrics, /healthz, /readyz.
EXPOSE 2525 9725
# /healthz answers 200 while the process runs and Redis answers. Node's own fetch, as the slim
# image has no curl. The start period covers the replay of a large append-only file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:9725/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains: intake stops, sessions in flight get shutdown_timeout (30 s by default). Docker
# kills after 10 s unless told otherwise: run with --stop-timeout 40 (or docker stop -t 40).
STOPSIGNAL SIGTERM
# node's flags as in the systemd unit (docs/operations.md, "Memory").
ENTRYPOINT ["node", "--max-semi-space-size=16", "--no-allocation-site-pretenuring", "--heap-growing-percent=100", "/opt/impulse/dist/src/cli/index.js"]
CMD ["start", "-c", "/etc/impulse/impulse.yaml"]
