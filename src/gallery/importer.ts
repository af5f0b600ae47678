// `face-recog visitors import <dir>`: stores photos the way the visitor backend would (the first
// image of a new visitor in `visitors`, the others in `visitor_images`), so a demo or a test can
// fill the tables without the backend. The gallery then finds them like any other stored image.
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, parse } from 'node:path';
import { sniffFormat } from '../engine/image.js';
import { FaceRecogError } from '../errors.js';
import type { Queryable } from './db.js';
import { introspectSources, type Source } from './sources.js';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);
const STORABLE_FORMATS = new Set(['jpeg', 'png', 'webp']);

export interface VisitorFiles {
  visitorId: string;
  files: string[];
}

export interface ImportPlan {
  visitors: VisitorFiles[];
  /** Files in the folder that are not images, by path. */
  ignored: string[];
}

export type StoredAs = 'base64' | 'data-url';

export interface VisitorImport {
  visitorId: string;
  visitors: number;
  visitorImages: number;
  /** Files not stored, with why. */
  skipped: { file: string; reason: string }[];
}

const byNaturalName = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

/**
 * Who is in the folder: a sub-folder per visitor (named by visitor id), or files named
 * `<visitor_id>.<ext>` or `<visitor_id>_<n>.<ext>` directly in it.
 */
export async function planImport(dir: string): Promise<ImportPlan> {
  const byVisitor = new Map<string, string[]>();
  const ignored: string[] = [];
  const add = (visitorId: string, file: string) => byVisitor.set(visitorId, [...(byVisitor.get(visitorId) ?? []), file]);
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => byNaturalName(a.name, b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const name of (await readdir(path)).sort(byNaturalName)) {
        if (isImageName(name)) add(entry.name, join(path, name));
        else ignored.push(join(path, name));
      }
    } else if (isImageName(entry.name)) {
      const stem = parse(entry.name).name;
      add(/^(.+)_\d+$/.exec(stem)?.[1] ?? stem, path);
    } else {
      ignored.push(path);
    }
  }
  const visitors = [...byVisitor].map(([visitorId, files]) => ({ visitorId, files }));
  return { visitors, ignored };
}

function storedText(bytes: Buffer, format: string, as: StoredAs): string {
  const base64 = bytes.toString('base64');
  return as === 'data-url' ? `data:image/${format};base64,${base64}` : base64;
}

async function alreadyStored(db: Queryable, sources: Source[], visitorId: string, image: string): Promise<boolean> {
  for (const s of sources) {
    const rows = await db.query(
      `SELECT 1 FROM ${s.relation} WHERE ${s.visitorColumn} = $1 AND ${s.imageColumn} = $2 LIMIT 1`,
      [visitorId, image],
    );
    if (rows.length > 0) return true;
  }
  return false;
}

async function hasVisitorRow(db: Queryable, source: Source, visitorId: string): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM ${source.relation} WHERE ${source.visitorColumn} = $1 LIMIT 1`, [visitorId])).length > 0;
}

/** Stores one visitor's photos; an image already stored for them (same text) is skipped. */
export async function importVisitor(db: Queryable, sources: Source[], visitor: VisitorFiles, as: StoredAs): Promise<VisitorImport> {
  const result: VisitorImport = { visitorId: visitor.visitorId, visitors: 0, visitorImages: 0, skipped: [] };
  const visitors = sources.find((s) => s.table === 'visitors');
  const images = sources.find((s) => s.table === 'visitor_images');
  let hasMainImage = visitors ? await hasVisitorRow(db, visitors, visitor.visitorId) : true;
  for (const file of visitor.files) {
    const bytes = await readFile(file);
    const format = sniffFormat(bytes);
    if (format === null || !STORABLE_FORMATS.has(format)) {
      result.skipped.push({ file, reason: `not a JPEG, PNG or WebP image (${format ?? 'unknown format'})` });
      continue;
    }
    const image = storedText(bytes, format, as);
    if (await alreadyStored(db, sources, visitor.visitorId, image)) {
      result.skipped.push({ file, reason: 'already stored for this visitor' });
    } else if (!hasMainImage && visitors) {
      await db.query(`INSERT INTO ${visitors.relation} (${visitors.visitorColumn}, ${visitors.imageColumn}) VALUES ($1, $2)`, [visitor.visitorId, image]);
      hasMainImage = true;
      result.visitors++;
    } else if (images) {
      await db.query(`INSERT INTO ${images.relation} (${images.visitorColumn}, ${images.imageColumn}) VALUES ($1, $2)`, [visitor.visitorId, image]);
      result.visitorImages++;
    } else {
      result.skipped.push({ file, reason: 'the visitor already has an image in visitors, and there is no visitor_images table' });
    }
  }
  return result;
}

/** The visitor tables to import into; fails when there are none. */
export async function importTargets(db: Queryable): Promise<Source[]> {
  const { sources, problems } = await introspectSources(db);
  if (sources.length === 0) {
    const why = problems.length ? `: ${problems.join('; ')}` : '';
    throw new FaceRecogError(
      'invalid_request',
      `no usable visitors or visitor_images table in this database${why}; with DATABASE_URL unset the embedded database creates them`,
    );
  }
  return sources;
}
