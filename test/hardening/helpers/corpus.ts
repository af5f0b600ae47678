// Crafted hostile images, generated at test time from the shared photos (nothing binary is
// committed): headers that lie about their size, truncations, formats we refuse, animations, odd
// but valid encodings, and payload strings that are not what they claim. Each case says what the
// contract answers for it.
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { readTestdata } from '../../helpers/fixtures.js';

/** What the contract answers: 200 (with the number of faces when it is certain) or an error code. */
export type Expected = { status: 200; faces?: number } | { status: 400 | 413; code: string };

export interface CraftedCase {
  name: string;
  /** The string sent as "image". */
  payload: string;
  expected: Expected;
}

export const PHOTO = 'faces/obama/1.jpg';
export const SMALL_PHOTO = 'hard/obama_240p.jpg';
export const WEBP_NAMED_JPG = 'hard/deepface_p03_webp_named_jpg.jpg';
export const PNG_PHOTO = 'hard/obama2_rgba.png';

const ok = (faces?: number): Expected => ({ status: 200, faces });
const invalidImage: Expected = { status: 400, code: 'invalid_image' };
const tooLarge: Expected = { status: 413, code: 'image_too_large' };

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A PNG whose header claims width x height, 8-bit RGB, followed by `idatBytes` of deflated zeros:
 * a few kilobytes that would inflate to gigabytes if anyone believed the header.
 */
export function pngClaiming(width: number, height: number, idatBytes = 1 << 20): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(idatBytes))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A copy of a baseline or progressive JPEG whose frame header (SOFn) claims another size. */
export function jpegClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let at = 2; at + 9 < out.length; ) {
    if (out[at] !== 0xff) throw new Error(`not a JPEG marker at ${at}`);
    const marker = out[at + 1];
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame) {
      out.writeUInt16BE(height, at + 5);
      out.writeUInt16BE(width, at + 7);
      return out;
    }
    at += 2 + out.readUInt16BE(at + 2);
  }
  throw new Error('no frame header found');
}

/** A copy of a lossless WebP (VP8L) whose header claims another size (at most 16384 x 16384). */
export function webpClaiming(webp: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(webp);
  if (out.toString('latin1', 12, 16) !== 'VP8L') throw new Error('not a lossless WebP');
  // VP8L: signature byte 0x2f at 20, then 14 bits width-1, 14 bits height-1 (little-endian).
  const bits = out.readUInt32LE(21);
  const rest = bits & ~0x0fffffff;
  out.writeUInt32LE((rest | ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14)) >>> 0, 21);
  return out;
}

const solid = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 200, g: 120, b: 40 } } });

async function animated(format: 'gif' | 'webp'): Promise<Buffer> {
  const frames = await Promise.all(['#f00', '#0f0'].map((background) => sharp({ create: { width: 16, height: 16, channels: 3, background } }).png().toBuffer()));
  const joined = sharp(frames, { join: { animated: true } });
  return format === 'gif' ? joined.gif().toBuffer() : joined.webp().toBuffer();
}

/** An upright photo stored turned 90° clockwise with EXIF orientation 8 ("turn 90° anticlockwise to display"). */
async function storedWithOrientation8(jpeg: Buffer): Promise<Buffer> {
  const turned = await sharp(jpeg).rotate(90).jpeg().toBuffer();
  return sharp(turned).withMetadata({ orientation: 8 }).jpeg().toBuffer();
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');

const SVG = '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&x;</text></svg>';

/** Every crafted case, most of them a few kilobytes. */
export async function craftedCorpus(): Promise<CraftedCase[]> {
  const photo = readTestdata(PHOTO);
  const small = readTestdata(SMALL_PHOTO);
  const png = readTestdata(PNG_PHOTO);
  const webpNamedJpg = readTestdata(WEBP_NAMED_JPG);
  const smallWebp = await sharp(small).webp({ lossless: true }).toBuffer();
  const smallPng = await sharp(small).png().toBuffer();
  const cut = (bytes: Buffer, fraction: number) => bytes.subarray(0, Math.floor(bytes.length * fraction));

  const cases: CraftedCase[] = [
    // Headers that lie about the size: refused from the header, before any pixel is decoded.
    { name: 'PNG header claiming 100000x100000 (decompression bomb)', payload: b64(pngClaiming(100_000, 100_000)), expected: tooLarge },
    { name: 'PNG 7000x7000 of deflated zeros (over MAX_IMAGE_PIXELS)', payload: b64(pngClaiming(7000, 7000, 7000 * (7000 * 3 + 1))), expected: tooLarge },
    { name: 'JPEG header claiming 65500x65500', payload: b64(jpegClaiming(small, 65_500, 65_500)), expected: tooLarge },
    { name: 'WebP header claiming 16384x16384 (inconsistent with its data)', payload: b64(webpClaiming(smallWebp, 16_384, 16_384)), expected: invalidImage },
    { name: 'PNG header claiming 0x0', payload: b64(pngClaiming(0, 0, 16)), expected: invalidImage },
    { name: 'JPEG header claiming 0x0', payload: b64(jpegClaiming(small, 0, 0)), expected: invalidImage },
    { name: 'JPEG header claiming a larger size than its data', payload: b64(jpegClaiming(small, 2000, 2000)), expected: invalidImage },
    // Truncated files: no partial decodes.
    { name: 'truncated JPEG (half)', payload: b64(cut(photo, 0.5)), expected: invalidImage },
    { name: 'truncated JPEG (all but the last 2 bytes)', payload: b64(photo.subarray(0, photo.length - 2)), expected: invalidImage },
    { name: 'truncated PNG (half)', payload: b64(cut(png, 0.5)), expected: invalidImage },
    { name: 'truncated WebP (half)', payload: b64(cut(webpNamedJpg, 0.5)), expected: invalidImage },
    { name: 'JPEG signature only', payload: b64(photo.subarray(0, 3)), expected: invalidImage },
    // Formats we refuse, whatever the decoder could do with them.
    { name: 'animated GIF (2 frames)', payload: b64(await animated('gif')), expected: invalidImage },
    { name: 'animated WebP (2 frames)', payload: b64(await animated('webp')), expected: invalidImage },
    { name: 'GIF (single frame)', payload: b64(await solid(16, 16).gif().toBuffer()), expected: invalidImage },
    { name: 'SVG with an external entity', payload: b64(Buffer.from(SVG)), expected: invalidImage },
    { name: 'TIFF', payload: b64(await solid(16, 16).tiff().toBuffer()), expected: invalidImage },
    { name: 'AVIF', payload: b64(await solid(16, 16).avif().toBuffer()), expected: invalidImage },
    { name: 'BMP header', payload: b64(Buffer.concat([Buffer.from('BM'), Buffer.alloc(64)])), expected: invalidImage },
    { name: 'PDF header', payload: b64(Buffer.from('%PDF-1.7\n1 0 obj<<>>endobj\n')), expected: invalidImage },
    { name: 'HTML page', payload: b64(Buffer.from('<!doctype html><script>alert(1)</script>')), expected: invalidImage },
    // Tiny, odd and unusual but valid images: answered.
    { name: '1x1 PNG', payload: b64(await solid(1, 1).png().toBuffer()), expected: ok(0) },
    { name: '1x1 JPEG', payload: b64(await solid(1, 1).jpeg().toBuffer()), expected: ok(0) },
    { name: '1x1 WebP', payload: b64(await solid(1, 1).webp().toBuffer()), expected: ok(0) },
    { name: '1x16000 PNG sliver', payload: b64(await solid(1, 16_000).png().toBuffer()), expected: ok(0) },
    { name: '6000x6000 PNG of one colour (small file, 36 Mpx)', payload: b64(await solid(6000, 6000).png({ compressionLevel: 9 }).toBuffer()), expected: ok(0) },
    { name: 'WebP named .jpg', payload: b64(webpNamedJpg), expected: ok(1) },
    { name: 'progressive JPEG', payload: b64(await sharp(small).jpeg({ progressive: true }).toBuffer()), expected: ok(1) },
    { name: 'CMYK JPEG', payload: b64(await sharp(small).toColourspace('cmyk').jpeg().toBuffer()), expected: ok(1) },
    { name: '16-bit PNG', payload: b64(await sharp(small).toColourspace('rgb16').png().toBuffer()), expected: ok(1) },
    { name: 'interlaced palette PNG', payload: b64(await sharp(small).png({ palette: true, progressive: true }).toBuffer()), expected: ok() },
    { name: 'greyscale PNG with alpha', payload: b64(await sharp(small).greyscale().ensureAlpha().png().toBuffer()), expected: ok() },
    { name: 'JPEG with EXIF orientation 8', payload: b64(await storedWithOrientation8(small)), expected: ok(1) },
    { name: 'JPEG followed by a ZIP archive (polyglot)', payload: b64(Buffer.concat([small, Buffer.from('PK\x03\x04'), Buffer.alloc(256, 7)])), expected: ok(1) },
    { name: 'lossless WebP', payload: b64(smallWebp), expected: ok(1) },
    { name: 'PNG photo', payload: b64(smallPng), expected: ok(1) },
    // Payload strings: base64 variants, junk, data URLs that lie.
    { name: 'URL-safe base64 without padding', payload: small.toString('base64url'), expected: ok(1) },
    { name: 'base64 wrapped at 76 columns (MIME)', payload: b64(small).replace(/.{76}/g, '$&\r\n'), expected: ok(1) },
    { name: 'base64 with junk characters inside', payload: `${b64(small).slice(0, 400)}!*$%${b64(small).slice(400)}`, expected: invalidImage },
    { name: 'base64 with a NUL character inside', payload: `${b64(small).slice(0, 400)}\u0000${b64(small).slice(400)}`, expected: invalidImage },
    { name: 'base64 with padding in the middle', payload: `${b64(small.subarray(0, 100))}${b64(small.subarray(100))}`, expected: invalidImage },
    { name: 'whitespace only', payload: ' \n\t ', expected: invalidImage },
    { name: 'data URL claiming image/png around a JPEG', payload: `data:image/png;base64,${b64(small)}`, expected: ok(1) },
    { name: 'data URL claiming image/jpeg around a WebP', payload: `data:image/jpeg;base64,${b64(webpNamedJpg)}`, expected: ok(1) },
    { name: 'data URL claiming text/html around a JPEG', payload: `data:text/html;base64,${b64(small)}`, expected: invalidImage },
    { name: 'data URL claiming image/jpeg around an SVG', payload: `data:image/jpeg;base64,${b64(Buffer.from(SVG))}`, expected: invalidImage },
    { name: 'data URL without ;base64', payload: `data:image/jpeg,${b64(small)}`, expected: invalidImage },
    { name: 'data URL with a 4 KB image/ media type', payload: `data:image/${'x'.repeat(4096)};base64,${b64(small)}`, expected: ok(1) },
    { name: 'data URL with the base64 image where the media type belongs', payload: `data:${b64(small)};base64,${b64(small)}`, expected: invalidImage },
  ];
  return cases;
}

/** The photos the property tests mutate, small so that each run stays quick. */
export async function mutationSeeds(): Promise<{ name: string; bytes: Buffer }[]> {
  const small = readTestdata(SMALL_PHOTO);
  return [
    { name: 'JPEG', bytes: small },
    { name: 'PNG', bytes: await sharp(small).resize(160).png().toBuffer() },
    { name: 'WebP', bytes: await sharp(small).resize(160).webp().toBuffer() },
  ];
}
