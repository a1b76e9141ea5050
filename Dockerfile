# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
RUN node node_modules/typescript/bin/tsc -p tsconfig.json

# Runtime stage: production dependencies, the compiled daemon, and redis-server for the
# embedded queue store.
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/impulse --create-home impulse
WORKDIR /opt/impulse
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund
COPY --from=build /app/dist/src ./dist/src
COPY config/impulse.yaml /etc/impulse/impulse.yaml
USER impulse
VOLUME ["/var/lib/impulse"]
EXPOSE 2525
ENTRYPOINT ["node", "/opt/impulse/dist/src/cli/index.js"]
CMD ["start", "-c", "/etc/impulse/impulse.yaml"]
