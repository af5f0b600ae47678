// GET /api/v1/gallery/images: what became of each stored visitor image (enrolled, or why not), so
// that the backend can ask a visitor for a better photo. Pages with a cursor; protected by API
// keys like every /api route (auth.ts).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Static } from 'typebox';
import { FaceRecogError } from '../errors.js';
import { DEFAULT_IMAGES_LIMIT, type ImageEntry } from '../gallery/images.js';
import { ROUTE_DEPENDENCIES } from './lifecycle.js';
import { SECURITY } from './openapi.js';
import type { ServiceParts } from './parts.js';
import { ErrorResponse, GalleryImage, GalleryImagesQuery, GalleryImagesResponse } from './schemas.js';

type GalleryImageView = Static<typeof GalleryImage>;

function imageView(entry: ImageEntry): GalleryImageView {
  return {
    source: { table: entry.table, key: entry.key },
    visitor_id: entry.visitorId,
    status: entry.status,
    reason: entry.reason,
    face: entry.face && { bbox: entry.face.box, detection_confidence: entry.face.score, rotated: entry.face.rotation },
    checked_at: entry.checkedAt,
  };
}

async function routes(parent: FastifyInstance, { parts }: { parts: ServiceParts }): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/v1/gallery/images',
    {
      schema: {
        tags: ['gallery'],
        summary: 'What became of each stored visitor image: enrolled, or why not (ask the visitor for a better photo)',
        security: SECURITY,
        querystring: GalleryImagesQuery,
        response: { 200: GalleryImagesResponse, '4xx': ErrorResponse, '5xx': ErrorResponse },
      },
    },
    async (request) => {
      const { gallery } = parts;
      if (!gallery) throw new FaceRecogError('not_ready', 'the visitor gallery is starting; retry shortly', { retryAfterS: 5 });
      const { status, visitor_id: visitorId, limit, after } = request.query;
      const page = await gallery.images({ status, visitorId, after, limit: limit === undefined ? DEFAULT_IMAGES_LIMIT : Number(limit) });
      return { images: page.images.map(imageView), next: page.next };
    },
  );
}

export const galleryImagesRoutes = fp(routes, { name: 'face-recog-gallery-images', fastify: '5.x', encapsulate: true, dependencies: ROUTE_DEPENDENCIES });
