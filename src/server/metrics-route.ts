// Prometheus metrics of the HTTP side: every answer counted and timed by route, and GET /metrics
// (protected by API keys like /api: auth.ts). Its hook must be in place before the routes it
// counts are registered, which their plugins declare by depending on this one.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ServiceMetrics } from './metrics.js';
import { metricsDoc } from './openapi.js';

export const metricsRoute = fp(
  async (app: FastifyInstance, { metrics }: { metrics: ServiceMetrics }) => {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? '(unmatched)';
      metrics.observeRequest(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    });
    app.get('/metrics', { schema: await metricsDoc(metrics.registry) }, async (_request, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  },
  // Documented in /openapi.json, which collects routes registered after it.
  { name: 'face-recog-metrics', fastify: '5.x', dependencies: ['face-recog-openapi'] },
);
