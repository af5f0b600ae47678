// The service's request, response and message shapes are generated from its own schemas
// (api-types.ts); this file adds what is the client's own: the images it takes and the options of
// its methods, made from the request shapes so that a field the service adds is a field here too.
import type { DetectRequest, GalleryImagesQuery, RecognizeRequest, VerifyRequest } from './api-types.js';

export type * from './api-types.js';

/**
 * An image: plain base64, a `data:image/...;base64,` URL, raw bytes (Uint8Array, Node Buffer,
 * ArrayBuffer) or a Blob/File. JPEG, PNG or WebP.
 */
export type ImageInput = string | Uint8Array | ArrayBuffer | Blob;

/**
 * Every field optional, and `undefined` taken for "not set", also under `exactOptionalPropertyTypes`:
 * fields left undefined are not sent, and the service applies its defaults.
 */
export type Unset<T> = { [K in keyof T]?: T[K] | undefined };

/** Per-request detection settings (every field of a detect request but the image). */
export type DetectOptions = Unset<Omit<DetectRequest, 'image'>>;

/** The fields of a recognize request but the image: the threshold and the detection settings. */
export type RecognizeFields = Unset<Omit<RecognizeRequest, 'image'>>;

/** The fields of a verify request but the images. */
export type VerifyFields = Unset<Omit<VerifyRequest, 'image1' | 'image2'>>;

/** Which stored images to list, and from which cursor (`limit` is sent as text in the query string). */
export type GalleryImagesOptions = Unset<Omit<GalleryImagesQuery, 'limit'> & { limit?: number }>;
