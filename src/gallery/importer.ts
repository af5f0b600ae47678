// `face-recog visitors import <dir>`: stores photos the way the visitor backend would (the first
// image of a new visitor in `visitors`, the others in `visitor_images`), so a demo or a test can
// fill the tables without the backend. The gallery then finds them like any other stored image.
//
// The visitor tables are written in their own types: the image as base64 text (or a data URL) in
// a text column, as the file's bytes in a bytea column; the visitor id as the folder's name when
// it is a valid value of the key's type (a uuid, a number), else as the key the database assigns
// (serial, identity, gen_random_uuid()), found again on the next import by the images it holds.
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, parse } from 'node:path';
import { sniffFormat } from '../engine/image.js';
import { FaceRecogError } from '../errors.js';
import { sqlState, type Database } from './db.js';
import { introspectSources, type Source } from './sources.js';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);
const STORABLE_FORMATS = new Set(['jpeg', 'png', 'webp']);
/** SQLSTATE classes 22 (data exception: not a valid uuid, out of range) and 23 (integrity: NOT NULL, foreign key). */
const DATA_EXCEPTION = '22';
const INTEGRITY_VIOLATION = '23';

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
  /** As named by the folder or file. */
  visitorId: string;
  /** The visitor_id the rows hold, when it is not the name (assigned by the database, or written canonically). */
  storedAs: string | null;
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

interface ImageFile {
  file: string;
  bytes: Buffer;
  format: string;
}

/** The value the image column takes: base64 text (or a data URL) for text, the bytes for bytea. */
function storedValue(source: Source, image: ImageFile, as: StoredAs): string | Buffer {
  if (source.imageKind === 'bytea') return image.bytes;
  const base64 = image.bytes.toString('base64');
  return as === 'data-url' ? `data:image/${image.format};base64,${base64}` : base64;
}

/** The name as a value of the key column's type (its canonical text), or null when it is not one. */
async function asKey(db: Database, source: Source, name: string): Promise<string | null> {
  if (source.visitorIsText) return name;
  try {
    const [row] = await db.query<{ key: string }>(`SELECT CAST($1::text AS ${source.visitorType})::text AS key`, [name]);
    return row.key;
  } catch (error) {
    if (sqlState(error)?.startsWith(DATA_EXCEPTION)) return null;
    throw error;
  }
}

/** The visitor already holding one of these images in these tables, if any. */
async function visitorHolding(db: Database, sources: Source[], images: ImageFile[], as: StoredAs): Promise<string | null> {
  for (const s of sources) {
    for (const image of images) {
      const [row] = await db.query<{ key: string }>(`SELECT ${s.visitorColumn}::text AS key FROM ${s.relation} WHERE ${s.imageColumn} = $1 LIMIT 1`, [
        storedValue(s, image, as),
      ]);
      if (row) return row.key;
    }
  }
  return null;
}

async function alreadyStored(db: Database, sources: Source[], key: string, image: ImageFile, as: StoredAs): Promise<boolean> {
  for (const s of sources) {
    const rows = await db.query(`SELECT 1 FROM ${s.relation} WHERE ${s.visitorColumn} = $1 AND ${s.imageColumn} = $2 LIMIT 1`, [key, storedValue(s, image, as)]);
    if (rows.length > 0) return true;
  }
  return false;
}

async function hasVisitorRow(db: Database, source: Source, key: string): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM ${source.relation} WHERE ${source.visitorColumn} = $1 LIMIT 1`, [key])).length > 0;
}

/** Inserts one row; returns the visitor_id it holds. `key` null: the database assigns it. */
async function insertRow(db: Database, source: Source, key: string | null, value: string | Buffer, file: string): Promise<string> {
  const [columns, values, params] = key === null
    ? [source.imageColumn, '$1', [value]]
    : [`${source.visitorColumn}, ${source.imageColumn}`, '$1, $2', [key, value]];
  try {
    const [row] = await db.query<{ key: string }>(
      `INSERT INTO ${source.relation} (${columns}) VALUES (${values}) RETURNING ${source.visitorColumn}::text AS key`,
      params,
    );
    return row.key;
  } catch (error) {
    const state = sqlState(error);
    if (state?.startsWith(INTEGRITY_VIOLATION) || state?.startsWith(DATA_EXCEPTION)) {
      const detail = (error as FaceRecogError).message.replace(/^a gallery query failed: /, '');
      throw new FaceRecogError('invalid_request', `cannot store ${file} in ${source.schema}.${source.table}: ${detail}`, { cause: error });
    }
    throw error;
  }
}

/** The visitor's key: the name if the key's type takes it, else the one already holding their images, else assigned on insert (null). */
async function visitorKey(db: Database, sources: Source[], visitor: VisitorFiles, images: ImageFile[], as: StoredAs): Promise<string | null> {
  const keyed = sources.find((s) => s.table === 'visitors') ?? sources[0];
  const key = await asKey(db, keyed, visitor.visitorId);
  if (key !== null) return key;
  const known = await visitorHolding(db, sources, images, as);
  if (known !== null) return known;
  if (keyed.table === 'visitors' && keyed.visitorHasDefault) return null;
  throw new FaceRecogError(
    'invalid_request',
    `'${visitor.visitorId}' is not a valid ${keyed.visitorType} for ${keyed.schema}.${keyed.table}.visitor_id, and the database does not assign one: ` +
      `name each folder (or file) by the visitor's id as the backend keeps it`,
  );
}

/** Stores one visitor's photos; an image already stored for them (same content) is skipped. */
export async function importVisitor(db: Database, sources: Source[], visitor: VisitorFiles, as: StoredAs): Promise<VisitorImport> {
  const result: VisitorImport = { visitorId: visitor.visitorId, storedAs: null, visitors: 0, visitorImages: 0, skipped: [] };
  const visitors = sources.find((s) => s.table === 'visitors');
  const images = sources.find((s) => s.table === 'visitor_images');
  const files: ImageFile[] = [];
  for (const file of visitor.files) {
    const bytes = await readFile(file);
    const format = sniffFormat(bytes);
    if (format === null || !STORABLE_FORMATS.has(format)) {
      result.skipped.push({ file, reason: `not a JPEG, PNG or WebP image (${format ?? 'unknown format'})` });
    } else {
      files.push({ file, bytes, format });
    }
  }
  if (files.length === 0) return result;
  let key = await visitorKey(db, sources, visitor, files, as);
  let hasMainImage = key === null ? false : visitors ? await hasVisitorRow(db, visitors, key) : true;
  for (const image of files) {
    const { file } = image;
    if (key !== null && (await alreadyStored(db, sources, key, image, as))) {
      result.skipped.push({ file, reason: 'already stored for this visitor' });
    } else if (!hasMainImage && visitors) {
      key = await insertRow(db, visitors, key, storedValue(visitors, image, as), file);
      hasMainImage = true;
      result.visitors++;
    } else if (images) {
      await insertRow(db, images, key, storedValue(images, image, as), file);
      result.visitorImages++;
    } else {
      result.skipped.push({ file, reason: 'the visitor already has an image in visitors, and there is no visitor_images table' });
    }
  }
  if (key !== visitor.visitorId) result.storedAs = key;
  return result;
}

/** The visitor tables to import into; fails when there are none, or when they cannot take an image. */
export async function importTargets(db: Database): Promise<Source[]> {
  const { sources, problems } = await introspectSources(db, db.schema.name);
  const usable = sources.filter((s) => s.imageKind !== 'unsupported');
  if (usable.length === 0) {
    const why = problems.length ? `: ${problems.map((p) => p.message).join('; ')}` : '';
    throw new FaceRecogError(
      'invalid_request',
      `no usable visitors or visitor_images table in this database${why}; with DATABASE_URL unset the embedded database creates them`,
    );
  }
  return usable;
}
