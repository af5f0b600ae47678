# face-recog: the HTTP + WebSocket service, the demo page at / and the models baked in.
#   docker build -t face-recog .            (needs internet: npm registry and the models' official sources)
#   docker run -p 8000:8000 face-recog      (embedded PostgreSQL under /app/data unless DATABASE_URL is set)

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json ./
COPY packages/client packages/client
COPY src src
# npm ci runs `prepare` = `npm run build`: dist/ (service, CLI) and packages/client/dist/ (the client).
RUN npm ci --no-audit --no-fund
# The models the image serves with, downloaded from their official sources and checked against
# their pinned sha256. Add mobilefacenet or the int8 variants here to switch with DETECTOR/RECOGNIZER.
ARG MODELS="yunet-2023mar sface-2021dec"
RUN MODELS_DIR=/app/models npx --no-install face-recog models fetch ${MODELS}
RUN npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
# MALLOC_ARENA_MAX=2: glibc's per-thread arenas otherwise let RSS creep ~10% over long runs
# (docs/reliability.md, "Memory over a long run").
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
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
COPY --from=build /app/models models
COPY web web
# `face-recog` on the PATH for one-off commands, e.g. `docker compose exec face-recog-api face-recog visitors import /photos`.
RUN chmod +x dist/cli/main.js && ln -s /app/dist/cli/main.js /usr/local/bin/face-recog
# The image's own user (uid 1000 in the node image); only the data directory is writable.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 8000
# /health is 200 once the models are loaded and the database answers (the image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server/main.js"]
