# face-recog: the HTTP + WebSocket service, the demo page at / and the models baked in.
#   docker build -t face-recog .                       models from their official sources (needs internet)
#   docker build -t face-recog --build-arg MODELS_MIRROR=http://host:port .   models from a mirror of those files
#   docker build -t face-recog --build-arg MODELS="yunet-2023mar mobilefacenet" .   other models (RECOGNIZER=...)
#   docker run -p 8000:8000 -e DATABASE_URL=postgres://... face-recog
#   docker run -p 8000:8000 -v face-recog-data:/app/data face-recog     (embedded PostgreSQL, kept in the volume)

FROM node:24-bookworm-slim AS build
# The classic builder keeps this stage as an untagged image (1 GB): `docker image prune --filter
# label=face-recog.stage=build` removes it (.ci/docker does).
LABEL face-recog.stage=build
WORKDIR /app
# A C toolchain for the native search kernel (packages/dot-native; optional, so the WebAssembly
# kernel serves where it cannot be built), in this stage only: the image keeps the built addon.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json ./
COPY packages/client packages/client
COPY packages/dot-native packages/dot-native
COPY src src
# npm ci runs `prepare` = `npm run build`: dist/ (service, CLI) and packages/client/dist/ (the client).
RUN npm ci --no-audit --no-fund
# Only what the service runs: no dev dependencies; onnxruntime-node's binaries for this platform
# only (the package ships five platforms': 245 MB for the other four); no type declarations, source
# maps or static libraries, which nothing loads at run time (13 MB). Licences and READMEs stay. The
# native search kernel must have been built here (the toolchain is installed above).
RUN npm prune --omit=dev --no-audit --no-fund \
 && platform=$(node -p 'process.platform + "/" + process.arch') \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 ! -path "*/napi-v6/$platform" -exec rm -rf {} + \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/$platform/onnxruntime_binding.node" \
 && test -f packages/dot-native/build/Release/dot_native.node \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.a' \) -delete \
 && find node_modules -depth -type d -empty -delete
# The models the image serves with, checked against their pinned sha256: from their official sources,
# or from MODELS_MIRROR (a base URL holding the same file names) on a machine without internet.
# DETECTOR and RECOGNIZER at run time must name models baked in here (the image never downloads).
ARG MODELS="yunet-2023mar sface-2021dec"
ARG MODELS_MIRROR=
RUN MODELS_DIR=/app/models MODELS_MIRROR="$MODELS_MIRROR" node dist/cli/main.js models fetch $MODELS \
 && chmod +x dist/cli/main.js

FROM node:24-bookworm-slim
# MALLOC_ARENA_MAX=2: glibc's per-thread arenas otherwise let RSS creep ~10% over long runs
# (docs/reliability.md, "Memory over a long run").
# ORT_DISABLE_TELEMETRY=1: onnxruntime 1.29+ on Linux otherwise keeps a device id and an event
# queue under ~/.cache/Microsoft and tries to upload usage events to Microsoft.
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    ORT_DISABLE_TELEMETRY=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODELS_DIR=/app/models \
    MODELS_OFFLINE=1 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/packages/client/package.json packages/client/package.json
COPY --from=build /app/packages/client/dist packages/client/dist
COPY --from=build /app/packages/dot-native packages/dot-native
COPY --from=build /app/models models
COPY web web
# `face-recog` on the PATH for one-off commands, e.g. `docker compose exec face-recog-api face-recog gallery status`.
# /app/data holds the embedded PostgreSQL when DATABASE_URL is unset; it is the only folder the
# service may write. No VOLUME: with DATABASE_URL set nothing is kept, so no anonymous volume is
# made; mount one at /app/data to keep the embedded database.
RUN ln -s /app/dist/cli/main.js /usr/local/bin/face-recog \
 && mkdir -p /app/data && chown node:node /app/data
# The image's own user (uid 1000 in the node image), not root.
USER node
EXPOSE 8000
# /health is 200 once the models are loaded and the database answers (the image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1: the service handles SIGTERM (docker stop) and SIGINT by finishing the
# requests in flight, closing the database (stopping the embedded one) and exiting 0.
CMD ["node", "dist/server/main.js"]
