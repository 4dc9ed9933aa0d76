# syntax=docker/dockerfile:1
#
# One image for every service of the mesh. The service is chosen at run time by the script path
# given as the container's arguments (the Helm chart sets `args`), e.g.
#   docker run logistics-mesh services/routing/dist/main.js
# Node options may come first (the chart passes the heap limit that way):
#   docker run logistics-mesh --max-old-space-size=384 services/routing/dist/main.js
# Why one image: one build, one vulnerability scan, one layer cache; the services share nearly all
# of their code and dependencies (see charts/README.md).

# Node.js 24 LTS on Debian 12, pinned by digest so a rebuild cannot pick up a different base
# silently. This digest is node:24-bookworm-slim as published in July 2026 (Node 24.18.0).
# Refresh it deliberately (security updates of Node or Debian), then rebuild and test:
#   docker buildx imagetools inspect node:24-bookworm-slim    # prints the current index digest
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

# ---- deps: production dependencies only. Depends on the lockfile alone, so this layer (the
# largest one of the runtime image) is reused by every build that changes only code. ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
COPY package.json package-lock.json ./
# The workspace packages' manifests (npm links them into node_modules/@logistics).
COPY services/shared/package.json services/shared/
COPY services/ingest/package.json services/ingest/
COPY services/routing/package.json services/routing/
COPY services/tracking/package.json services/tracking/
COPY services/notification/package.json services/notification/
COPY services/web/package.json services/web/
COPY dev/package.json dev/
COPY perf/package.json perf/
# Install scripts are skipped: no production dependency needs one.
RUN npm ci --omit=dev --ignore-scripts \
 && npm cache clean --force

# ---- build: every dependency, compile the four services and the shared package ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NODE_ENV=development \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
COPY package.json package-lock.json ./
COPY --from=deps /app/services ./services
COPY --from=deps /app/dev ./dev
COPY --from=deps /app/perf ./perf
RUN npm ci --ignore-scripts
# Generated Protobuf code is committed under services/shared/src/gen, so no buf step is needed.
# Each package compiles its src/ (tests excluded) into its own dist/.
COPY tsconfig.base.json ./
COPY services ./services
RUN npm run build:services

# ---- runtime: compiled code and production dependencies only, as a non-root user ----
FROM ${NODE_IMAGE} AS runtime
ARG NODE_IMAGE
LABEL org.opencontainers.image.title="logistics-mesh" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
# No package manager at run time: the services never install anything, and npm, corepack and
# yarn (with their own dependency trees) would only add attack surface and scanner findings.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
WORKDIR /app
# Each service reports the version of its own package.json (services/<name>/package.json, copied
# below beside its dist/) as service.version, however the process is started.
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/services/shared/package.json ./services/shared/package.json
COPY --from=build --chown=root:root /app/services/shared/dist ./services/shared/dist
COPY --from=build --chown=root:root /app/services/ingest/package.json ./services/ingest/package.json
COPY --from=build --chown=root:root /app/services/ingest/dist ./services/ingest/dist
COPY --from=build --chown=root:root /app/services/routing/package.json ./services/routing/package.json
COPY --from=build --chown=root:root /app/services/routing/dist ./services/routing/dist
COPY --from=build --chown=root:root /app/services/tracking/package.json ./services/tracking/package.json
COPY --from=build --chown=root:root /app/services/tracking/dist ./services/tracking/dist
COPY --from=build --chown=root:root /app/services/notification/package.json ./services/notification/package.json
COPY --from=build --chown=root:root /app/services/notification/dist ./services/notification/dist
# Numeric so Kubernetes' runAsNonRoot can verify it without resolving the name.
USER 10001:10001
# gRPC / gRPC-Web / Connect (ingest's default; each service has its own) and Prometheus metrics.
EXPOSE 8081 9101
# SIGTERM goes straight to node (PID 1): the services drain on it (health NOT_SERVING, stop
# accepting, finish in-flight RPCs and streams, close consumers and NATS, flush telemetry) and
# exit before SHUTDOWN_CLOSE_MS runs out.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node"]
CMD ["services/ingest/dist/main.js"]
