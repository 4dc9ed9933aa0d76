# syntax=docker/dockerfile:1
#
# One image for every service of the mesh. The service is chosen at run time by the script path
# given as the container's arguments (the Helm chart sets `args`), e.g.
#   docker run logistics-mesh dist/services/routing/src/main.js
# Why one image: one build, one vulnerability scan, one layer cache; the services share nearly all
# of their code and dependencies (see charts/README.md).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: install everything, compile TypeScript, drop dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NODE_ENV=development \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

# Dependencies first so the layer is reused while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts

# Generated Protobuf code is committed under services/shared/src/gen, so no buf step is needed.
COPY tsconfig.json tsconfig.build.json ./
COPY services ./services
RUN npm run build \
 && find dist -type f \( -name '*.test.js' -o -name '*.test.js.map' \) -delete \
 && find dist -type d -name test -prune -exec rm -rf {} + \
 && npm prune --omit=dev --ignore-scripts \
 && npm cache clean --force

# ---- runtime: compiled code and production dependencies only, as a non-root user ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
WORKDIR /app
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
# Numeric so Kubernetes' runAsNonRoot can verify it without resolving the name.
USER 10001:10001
# gRPC / gRPC-Web / Connect (ingest's default; each service has its own) and Prometheus metrics.
EXPOSE 8081 9101
# SIGTERM goes straight to node (PID 1): the services drain on it (health NOT_SERVING, stop
# accepting, finish in-flight RPCs and streams) and exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node"]
CMD ["dist/services/ingest/src/main.js"]
