// The app's plugins declare the plugins they need registered before them, so that Fastify itself
// refuses an app in the wrong order at start, instead of quietly serving a route without auth,
// rate limits, metrics or docs. Each plugin here is registered after everything but one of its
// dependencies (or with none), and must be refused, naming what is missing.
import Fastify, { type FastifyPluginAsync } from 'fastify';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { auth } from '../../src/server/auth.js';
import { corsPolicy } from '../../src/server/cors.js';
import { errorHandling } from '../../src/server/error-handler.js';
import { galleryImagesRoutes } from '../../src/server/gallery-images.js';
import { lifecycle } from '../../src/server/lifecycle.js';
import { metricsRoute } from '../../src/server/metrics-route.js';
import { openApi } from '../../src/server/openapi.js';
import { rateLimits } from '../../src/server/rate-limit.js';
import { realtime } from '../../src/server/realtime.js';
import { apiRoutes } from '../../src/server/routes.js';
import { Service } from '../../src/server/service.js';
import { webRoutes } from '../../src/server/web.js';

type Registration = [name: string, plugin: FastifyPluginAsync<any>, options: object];

const parts = new Service(loadConfig({}));
// The order of app.ts, each with the options it takes there.
const ORDER: Registration[] = [
  ['face-recog-errors', errorHandling, {}],
  ['face-recog-lifecycle', lifecycle, { parts }],
  ['face-recog-openapi', openApi, { version: 'test' }],
  ['face-recog-metrics', metricsRoute, { metrics: parts.metrics }],
  ['face-recog-cors', corsPolicy, { origins: [] }],
  ['face-recog-realtime', realtime, { parts }],
  ['face-recog-auth', auth, { apiKeys: ['k'] }],
  ['face-recog-rate-limit', rateLimits, { perMinute: 10 }],
  ['face-recog-api', apiRoutes, { parts }],
  ['face-recog-gallery-images', galleryImagesRoutes, { parts }],
  ['face-recog-web', webRoutes, {}],
];

async function readyWith(registrations: Registration[]): Promise<unknown> {
  const app = Fastify();
  for (const [, plugin, options] of registrations) app.register(plugin, options);
  try {
    await app.ready();
    return null;
  } catch (error) {
    return error;
  } finally {
    await app.close();
  }
}

describe('plugin order', () => {
  it('loads in the order of app.ts', async () => {
    expect(await readyWith(ORDER)).toBeNull();
  });

  it.each([
    ['face-recog-auth', '@fastify/websocket'],
    ['face-recog-auth', 'face-recog-cors'],
    // Counted per key: the decorator auth adds is checked first.
    ['face-recog-rate-limit', 'face-recog-auth', "decorator 'apiKeyId'"],
    ['face-recog-api', 'face-recog-rate-limit'],
    ['face-recog-api', 'face-recog-metrics'],
    ['face-recog-gallery-images', 'face-recog-openapi'],
    ['face-recog-web', 'face-recog-lifecycle'],
    ['face-recog-realtime', 'face-recog-openapi'],
    ['face-recog-metrics', 'face-recog-openapi'],
    ['face-recog-lifecycle', 'face-recog-errors'],
  ])('refuses %s registered before %s', async (plugin: string, missing: string, said = `'${missing}'`) => {
    // Everything up to the plugin, less the one it must come after (and, for a plugin another
    // registers, the plugin that registers it).
    const upTo = ORDER.slice(0, ORDER.findIndex(([name]) => name === plugin) + 1);
    const without = upTo.filter(([name]) => name !== (missing === '@fastify/websocket' ? 'face-recog-realtime' : missing));
    const error = (await readyWith(without)) as { code?: string; message?: string } | null;
    expect(['FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', 'FST_ERR_PLUGIN_NOT_PRESENT_IN_INSTANCE']).toContain(error?.code);
    expect(error?.message).toContain(said);
  });
});
