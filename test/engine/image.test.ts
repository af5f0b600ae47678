import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage, decodeImagePayload, sniffFormat } from '../../src/engine/image.js';
import { FaceRecogError } from '../../src/errors.js';
import { fixturesMissing, readTestdata } from '../helpers/fixtures.js';

const LIMITS = { maxBytes: 5 * 1024 * 1024, maxPixels: 40_000_000 };

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<FaceRecogError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    expect(error).toBeInstanceOf(FaceRecogError);
    expect((error as FaceRecogError).code).toBe(code);
    return error as FaceRecogError;
  }
  throw new Error(`expected a ${code} error`);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  let crc = 0xffffffff;
  for (const b of body) crc = CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const checksum = Buffer.alloc(4);
  checksum.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return Buffer.concat([length, body, checksum]);
}

/** A decompression bomb: a valid PNG claiming width x height, whose zlib stream of zeros is tiny. */
function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const zeros = deflateSync(Buffer.alloc(4 * 1024 * 1024));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zeros),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('image payloads', () => {
  const bytes = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 250, 251]);

  it('accepts plain base64, URL-safe base64, whitespace and data URLs', () => {
    expect(decodeImagePayload(bytes.toString('base64'), 100)).toEqual(bytes);
    expect(decodeImagePayload(bytes.toString('base64url'), 100)).toEqual(bytes);
    expect(decodeImagePayload(bytes.toString('base64').replace(/(.{4})/g, '$1\n'), 100)).toEqual(bytes);
    expect(decodeImagePayload(`data:image/jpeg;base64,${bytes.toString('base64')}`, 100)).toEqual(bytes);
  });

  it('refuses junk, empty input, non-image data URLs and oversized payloads with their codes', async () => {
    await expectCode(() => decodeImagePayload('not base64 at all!', 100), 'invalid_image');
    await expectCode(() => decodeImagePayload('', 100), 'invalid_image');
    await expectCode(() => decodeImagePayload('data:text/plain;base64,aGVsbG8=', 100), 'invalid_image');
    await expectCode(() => decodeImagePayload('data:image/png,rawdata', 100), 'invalid_image');
    await expectCode(() => decodeImagePayload(Buffer.alloc(300).toString('base64'), 100), 'image_too_large');
  });

  it('names formats from their bytes, not their names', () => {
    expect(sniffFormat(bytes)).toBe('jpeg');
    expect(sniffFormat(Buffer.from('GIF89a...'))).toBe('gif');
    expect(sniffFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBe('svg');
    expect(sniffFormat(Buffer.from('hello'))).toBeNull();
  });
});

describe('image decoding', () => {
  it('applies EXIF orientation', async () => {
    const upright = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#ff0000' } })
      .jpeg()
      .withMetadata({ orientation: 6 }) // rotate 90° clockwise to display
      .toBuffer();
    const image = await decodeImage(upright, LIMITS);
    expect([image.width, image.height]).toEqual([20, 40]);
  });

  it('gives 3-channel RGB for grayscale, alpha and WebP input', async () => {
    const gray = await sharp({ create: { width: 8, height: 6, channels: 3, background: '#808080' } }).grayscale().png().toBuffer();
    const rgba = await sharp({ create: { width: 8, height: 6, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const webp = await sharp({ create: { width: 8, height: 6, channels: 3, background: '#0000ff' } }).webp({ lossless: true }).toBuffer();
    for (const input of [gray, rgba, webp]) {
      const image = await decodeImage(input, LIMITS);
      expect(image.data.length).toBe(8 * 6 * 3);
    }
    const blue = await decodeImage(webp, LIMITS);
    expect([...blue.data.subarray(0, 3)]).toEqual([0, 0, 255]);
  });

  it('decodes a 1x1 image', async () => {
    const one = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#010203' } }).png().toBuffer();
    expect(await decodeImage(one, LIMITS)).toMatchObject({ width: 1, height: 1 });
  });

  it('refuses a decompression bomb from its header, before decoding', async () => {
    const error = await expectCode(decodeImage(pngBomb(100_000, 100_000), LIMITS), 'image_too_large');
    expect(error.message).toContain('100000x100000');
  });

  it('refuses other formats, animations and truncated files', async () => {
    const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).gif().toBuffer();
    await expectCode(decodeImage(gif, LIMITS), 'invalid_image');
    await expectCode(decodeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), LIMITS), 'invalid_image');
    const twoFrames = Buffer.alloc(8 * 16 * 3, 100).fill(250, 8 * 8 * 3);
    const animated = await sharp(twoFrames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } })
      .webp({ loop: 0 })
      .toBuffer();
    const animatedError = await expectCode(decodeImage(animated, LIMITS), 'invalid_image');
    expect(animatedError.message).toContain('animated');
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#abc' } }).jpeg().toBuffer();
    await expectCode(decodeImage(jpeg.subarray(0, jpeg.length - 40), LIMITS), 'invalid_image');
    await expectCode(decodeImage(Buffer.from('just some text'), LIMITS), 'invalid_image');
  });

  it.skipIf(fixturesMissing)('decodes WebP data named .jpg and a 32-bit RGBA PNG from the test photos', async () => {
    const webp = await decodeImage(readTestdata('hard/deepface_p03_webp_named_jpg.jpg'), LIMITS);
    expect([webp.width, webp.height]).toEqual([1350, 1800]);
    const rgba = await decodeImage(readTestdata('hard/obama2_rgba.png'), LIMITS);
    expect(rgba.data.length).toBe(rgba.width * rgba.height * 3);
  });
});
