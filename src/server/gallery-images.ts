// GET /api/v1/gallery/images: what became of each stored visitor image (enrolled, or why not), so
// that the backend can ask a visitor for a better photo. Pages with a cursor; protected by API
// keys like every /api route (auth.ts).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { FaceRecogError } from '../errors.js';
import { DEFAULT_IMAGES_LIMIT, MAX_IMAGES_LIMIT, type ImageEntry } from '../gallery/images.js';
import type { Gallery } from '../gallery/types.js';
import { Box, ErrorResponse } from './schemas.js';

const Reason = Type.Union([
  Type.Literal('invalid_image'),
  Type.Literal('no_face'),
  Type.Literal('several_faces'),
  Type.Literal('face_too_small'),
  Type.Literal('unsupported_column'),
]);

export const GalleryImagesQuery = Type.Object({
  status: Type.Optional(
    Type.Union([Type.Literal('ok'), Type.Literal('failed'), ...Reason.anyOf], { description: 'ok (enrolled), failed (not enrolled), or one reason' }),
  ),
  visitor_id: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'Only this visitor\'s images' })),
  // Query strings are text and the app does not coerce types: the pattern is the range 1..1000.
  limit: Type.Optional(Type.String({ pattern: `^(?:[1-9][0-9]{0,2}|${MAX_IMAGES_LIMIT})$`, description: `Images per page, 1 to ${MAX_IMAGES_LIMIT} (default ${DEFAULT_IMAGES_LIMIT})` })),
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'The `next` cursor of the previous page' })),
});

const GalleryImage = Type.Object({
  source: Type.Object({
    table: Type.Union([Type.Literal('visitors'), Type.Literal('visitor_images')]),
    key: Type.Union([Type.String(), Type.Null()], {
      description: "The row's primary key as text (a composite key as a JSON array), its ctid when it has none; null when the row changed since it was checked",
    }),
  }),
  visitor_id: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('failed')], { description: 'ok: enrolled (searchable); failed: not enrolled' }),
  reason: Type.Union([Reason, Type.Null()], {
    description: 'Why not enrolled, or several_faces when enrolled with the largest, most confident of several faces; null when enrolled cleanly',
  }),
  face: Type.Union([
    Type.Object({
      bbox: Box,
      detection_confidence: Type.Number({ description: 'Detector score, 0..1' }),
      rotated: Type.Integer({ description: 'Clockwise degrees (0, 90, 180, 270) the stored image was turned before its face was found' }),
    }),
    Type.Null(),
  ], { description: 'The enrolled face; null when not enrolled' }),
  checked_at: Type.String({ format: 'date-time', description: 'When this image was last extracted' }),
});

export const GalleryImagesResponse = Type.Object({
  images: Type.Array(GalleryImage),
  next: Type.Union([Type.String(), Type.Null()], { description: 'Cursor for `after`; null on the last page' }),
});

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

export async function galleryImagesRoutes(parent: FastifyInstance, deps: { gallery: () => Gallery | null }): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/v1/gallery/images',
    {
      schema: {
        tags: ['gallery'],
        summary: 'What became of each stored visitor image: enrolled, or why not (ask the visitor for a better photo)',
        security: [{ bearer: [] }, { apiKey: [] }],
        querystring: GalleryImagesQuery,
        response: { 200: GalleryImagesResponse, '4xx': ErrorResponse, '5xx': ErrorResponse },
      },
    },
    async (request) => {
      const gallery = deps.gallery();
      if (!gallery) throw new FaceRecogError('not_ready', 'the visitor gallery is starting; retry shortly', { retryAfterS: 5 });
      const { status, visitor_id: visitorId, limit, after } = request.query;
      const page = await gallery.images({ status, visitorId, after, limit: limit === undefined ? DEFAULT_IMAGES_LIMIT : Number(limit) });
      return { images: page.images.map(imageView), next: page.next };
    },
  );
}
