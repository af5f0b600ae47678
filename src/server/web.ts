// The demo page (web/) at / and the typed client's browser build (packages/client/dist) at
// /client/, both static files from the repository, open like /docs.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ROUTE_DEPENDENCIES } from './lifecycle.js';

// Same depth from src/server (tsx) and dist/server (built).
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PAGE_DIR = `${REPO_ROOT}web`;
const CLIENT_DIR = `${REPO_ROOT}packages/client/dist`;

export const webRoutes = fp(
  async (app: FastifyInstance) => {
    if (!existsSync(`${CLIENT_DIR}/index.js`)) {
      app.log.warn('packages/client/dist is missing: run `npm run build` for the demo page at /');
    }
    await app.register(fastifyStatic, { root: PAGE_DIR, prefix: '/' });
    await app.register(fastifyStatic, { root: CLIENT_DIR, prefix: '/client/', decorateReply: false });
  },
  // Encapsulated: @fastify/static's reply decorators stay in here.
  { name: 'face-recog-web', fastify: '5.x', encapsulate: true, dependencies: ROUTE_DEPENDENCIES },
);
