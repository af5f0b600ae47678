// From what a client sends (base64 or a data URL) to RGB pixels, refusing anything we should not
// decode before spending memory on it.
import sharp, { type Metadata } from 'sharp';
import { FaceRecogError } from '../errors.js';

/** 8-bit RGB, interleaved, rows top to bottom, as the image is displayed (EXIF orientation applied). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface ImageLimits {
  /** Largest encoded image accepted, in bytes. */
  maxBytes: number;
  /** Largest width x height accepted, checked from the header before decoding. */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxBytes: 15 * 1024 * 1024, maxPixels: 40_000_000 };

export type ImageFormat = 'jpeg' | 'png' | 'webp';

const SIGNATURES: { format: string; test: (b: Uint8Array) => boolean }[] = [
  { format: 'jpeg', test: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  { format: 'png', test: (b) => ascii(b, 1, 3) === 'PNG' && b[0] === 0x89 },
  { format: 'webp', test: (b) => ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP' },
  { format: 'gif', test: (b) => ascii(b, 0, 4) === 'GIF8' },
  { format: 'bmp', test: (b) => ascii(b, 0, 2) === 'BM' },
  { format: 'tiff', test: (b) => ascii(b, 0, 4) === 'II*\0' || ascii(b, 0, 4) === 'MM\0*' },
  { format: 'heif/avif', test: (b) => ascii(b, 4, 4) === 'ftyp' },
  { format: 'pdf', test: (b) => ascii(b, 0, 4) === '%PDF' },
  { format: 'svg', test: (b) => /^\s*(<\?xml|<svg|<!DOCTYPE svg)/i.test(ascii(b, 0, 64)) },
];

function ascii(bytes: Uint8Array, start: number, length: number): string {
  return Buffer.from(bytes.subarray(start, start + length)).toString('latin1');
}

/** The format named by the bytes themselves; file names and MIME types are not trusted. */
export function sniffFormat(bytes: Uint8Array): string | null {
  return SIGNATURES.find((s) => s.test(bytes))?.format ?? null;
}

const DATA_URL = /^data:([^;,]*)((?:;[^;,]*)*),/;
const BASE64_BODY = /^[A-Za-z0-9+/_-]*={0,2}$/;

// The client's own text is quoted in messages only this far: messages are logged, and whatever
// stands where a media type should (base64 pasted in the wrong place) must not reach a log.
const MAX_QUOTED = 40;

function clip(text: string): string {
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}...` : text;
}

function invalidImage(message: string): FaceRecogError {
  return new FaceRecogError('invalid_image', message);
}

/** Plain base64 (standard or URL-safe alphabet) or a `data:image/...;base64,` URL to bytes. */
export function decodeImagePayload(payload: string, maxBytes: number): Buffer {
  let body = payload;
  const dataUrl = DATA_URL.exec(payload);
  if (dataUrl) {
    const [prefix, mime, params] = dataUrl;
    if (!/^image\//i.test(mime)) throw invalidImage(`data URL has media type '${clip(mime) || 'none'}'; expected image/jpeg, image/png or image/webp`);
    if (!/;base64$/i.test(params)) throw invalidImage('data URL is not base64-encoded (missing ;base64)');
    body = payload.slice(prefix.length);
  }
  body = body.replace(/\s+/g, '');
  if (body.length === 0) throw invalidImage('image is empty');
  // Decoded size is known from the length alone: refuse before allocating.
  const decodedBytes = Math.floor((body.length * 3) / 4);
  if (decodedBytes > maxBytes + 2) {
    throw new FaceRecogError('image_too_large', `image is ${decodedBytes} bytes; the limit is ${maxBytes} bytes`);
  }
  if (!BASE64_BODY.test(body) || body.length % 4 === 1) throw invalidImage('image is not valid base64');
  return Buffer.from(body, body.includes('-') || body.includes('_') ? 'base64url' : 'base64');
}

/** Decodes JPEG, PNG or WebP bytes to RGB with EXIF orientation applied. */
export async function decodeImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<RgbImage> {
  if (bytes.byteLength > limits.maxBytes) {
    throw new FaceRecogError('image_too_large', `image is ${bytes.byteLength} bytes; the limit is ${limits.maxBytes} bytes`);
  }
  const format = sniffFormat(bytes);
  if (format === null) throw invalidImage('image format not recognised; send JPEG, PNG or WebP');
  if (format !== 'jpeg' && format !== 'png' && format !== 'webp') {
    throw invalidImage(`${format.toUpperCase()} images are not supported; send JPEG, PNG or WebP`);
  }
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    // Header only: our own pixel limit is checked below with a clearer message than sharp's.
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw invalidImage(`image could not be read as ${format.toUpperCase()}: ${decoderReason(error)}`);
  }
  const { width = 0, height = 0 } = meta;
  if (width < 1 || height < 1) throw invalidImage(`image has no pixels (${width}x${height})`);
  if (width * height > limits.maxPixels) {
    throw new FaceRecogError('image_too_large', `image is ${width}x${height} pixels; the limit is ${limits.maxPixels} pixels`);
  }
  if ((meta.pages ?? 1) > 1) throw invalidImage(`animated images are not supported (${meta.pages} frames); send a single frame`);
  try {
    const { data, info } = await sharp(input, { failOn: 'truncated', limitInputPixels: limits.maxPixels })
      .rotate() // EXIF orientation
      .removeAlpha() // as OpenCV's imread(IMREAD_COLOR) does
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch (error) {
    throw invalidImage(`image could not be decoded as ${format.toUpperCase()}: ${decoderReason(error)}`);
  }
}

/** The decoder's own words, minus library prefixes; never any image bytes. */
function decoderReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const reason = message
    .replace(/^Input buffer has corrupt header:\s*/i, '')
    .replace(/^(VipsJpeg|vipspng|webp|VipsForeignLoad\w*):\s*/i, '')
    .split('\n')[0]
    .trim();
  return (reason || 'corrupt or truncated data').slice(0, 200);
}

/** Bilinear resize to exactly width x height (libvips). */
export async function resizeImage(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (width === image.width && height === image.height) return image;
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer();
  return { data, width, height };
}

/** The `region` of `image` ([left, top, width, height], whole pixels inside it), resized bilinearly to width x height. */
export async function cropResizeImage(image: RgbImage, region: [number, number, number, number], width: number, height: number): Promise<RgbImage> {
  const [left, top, regionWidth, regionHeight] = region;
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract({ left, top, width: regionWidth, height: regionHeight })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer();
  return { data, width, height };
}
