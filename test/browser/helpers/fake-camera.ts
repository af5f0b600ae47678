// A video for Chromium's fake camera (--use-file-for-fake-video-capture): frames of the shared
// clip, decoded with sharp and converted to YUV 4:2:0 here, so nothing video-shaped is committed.
import { open } from 'node:fs/promises';
import sharp from 'sharp';

const WIDTH = 640;
const HEIGHT = 360;
const FPS = 30;

/** Full-range BT.601 (JPEG) RGB → I420: the "C420jpeg" colour space the header declares. */
export function rgbToI420(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const lumaSize = width * height;
  const chromaWidth = width / 2;
  const out = new Uint8Array(lumaSize * 1.5);
  const u = out.subarray(lumaSize, lumaSize + lumaSize / 4);
  const v = out.subarray(lumaSize + lumaSize / 4);
  for (let i = 0, p = 0; i < lumaSize; i++, p += 3) {
    out[i] = Math.round(0.299 * rgb[p] + 0.587 * rgb[p + 1] + 0.114 * rgb[p + 2]);
  }
  for (let y = 0; y < height; y += 2) {
    for (let x = 0; x < width; x += 2) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
        const p = ((y + dy) * width + x + dx) * 3;
        r += rgb[p];
        g += rgb[p + 1];
        b += rgb[p + 2];
      }
      r /= 4;
      g /= 4;
      b /= 4;
      const c = (y / 2) * chromaWidth + x / 2;
      u[c] = Math.min(255, Math.max(0, Math.round(-0.168736 * r - 0.331264 * g + 0.5 * b + 128)));
      v[c] = Math.min(255, Math.max(0, Math.round(0.5 * r - 0.418688 * g - 0.081312 * b + 128)));
    }
  }
  return out;
}

/**
 * Writes a 640x360 30 fps .y4m showing each of `frames` (image files) for `secondsPerFrame`;
 * Chromium loops it.
 */
export async function writeFakeCamera(frames: string[], path: string, secondsPerFrame = 1): Promise<void> {
  const file = await open(path, 'w');
  try {
    await file.write(`YUV4MPEG2 W${WIDTH} H${HEIGHT} F${FPS}:1 Ip A1:1 C420jpeg\n`);
    for (const frame of frames) {
      const rgb = await sharp(frame).resize(WIDTH, HEIGHT, { fit: 'fill' }).removeAlpha().raw().toBuffer();
      const yuv = rgbToI420(rgb, WIDTH, HEIGHT);
      for (let i = 0; i < Math.round(secondsPerFrame * FPS); i++) {
        await file.write('FRAME\n');
        await file.write(yuv);
      }
    }
  } finally {
    await file.close();
  }
}
