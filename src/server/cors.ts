// CORS_ORIGINS: which browser origins may call the API (none unless set). Its hook answers
// browsers' preflights, which carry no credentials, so it must run before auth's (auth.ts depends
// on this plugin for that).
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

const ORIGIN = /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/i;
// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_S = 600;

/** CORS_ORIGINS as @fastify/cors takes it: exact origins, or "*" alone for any origin. */
export function corsOrigin(origins: readonly string[]): string | string[] {
  if (origins.length === 1 && origins[0] === '*') return '*';
  const invalid = origins.filter((origin) => !ORIGIN.test(origin));
  if (invalid.length > 0) {
    throw new Error(`CORS_ORIGINS has ${invalid.map((o) => `'${o}'`).join(', ')}: expected origins like https://desk.example.com or http://localhost:3000 (no path), or * alone`);
  }
  return [...origins];
}

export const corsPolicy = fp(
  async (app: FastifyInstance, { origins }: { origins: readonly string[] }) => {
    if (origins.length === 0) return;
    await app.register(cors, { origin: corsOrigin(origins), methods: ['GET', 'POST'], maxAge: PREFLIGHT_MAX_AGE_S });
  },
  { name: 'face-recog-cors', fastify: '5.x' },
);
