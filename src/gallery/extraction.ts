// Extraction: what the extractor replica does with new or changed rows. Each is first digested by
// the server (sha256 of the stored value, no image sent), so that an image already known under
// another row version reuses its outcome; the rest are fetched a batch at a time and handed to the
// extractor with up to `concurrency` calls in flight. Outcomes are saved in batches by one writer
// that runs beside the extraction (a save never holds it up, and saves commit in order, fenced by
// the lease); the catalog takes each batch once it is committed.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import type { Catalog, Face } from './catalog.js';
import type { Database, Queryable } from './db.js';
import type { CachedFeature, FeatureCache, NewFeature, Outcome } from './feature-cache.js';
import { digestSourceRows, fetchSourceImages, storedImage, type DigestedRow, type ImageRow, type Source, type SourceRow } from './sources.js';
import type { Extractor } from './types.js';

/** Rows whose digest is asked for in one query. */
const DIGEST_CHUNK = 1_000;
const PROGRESS_EVERY_MS = 5_000;
/** Extractor failures that say something about the stored image, so retrying cannot help. */
const IMAGE_ERRORS = new Set(['invalid_image', 'image_too_large', 'too_many_faces']);

export interface ExtractionOptions {
  db: Database;
  cache: FeatureCache;
  catalog: Catalog;
  extractor: Extractor;
  dimension: number;
  /** Images fetched (and saved) per batch. */
  batchSize: number;
  /** Extractor calls in flight at once. */
  concurrency: number;
  /** Runs a cache write in the lease's fenced transaction. */
  fenced: <T>(work: (tx: Queryable) => Promise<T>) => Promise<T>;
  /** Stop between images (closing, or the lease lost): what is saved stays, the rest is done later. */
  stopped: () => boolean;
  /** After each committed write: the newest cache version it wrote, and how many images it extracted. */
  onSaved: (version: number, extracted: number) => void;
  logger: Logger;
}

export interface ExtractionReport {
  images: number;
  extracted: number;
  reused: number;
  failed: number;
  removed: number;
  seconds: number;
  imagesPerSecond: number;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** As the server hashes the stored value (digestSourceRows): a text's UTF-8 bytes, or the bytes. */
function digestOf(image: string | Buffer): Buffer {
  const hash = createHash('sha256');
  return (typeof image === 'string' ? hash.update(image, 'utf8') : hash.update(image)).digest();
}

function unsupported(source: Source): Outcome {
  return {
    status: 'failed',
    reason: 'unsupported_column',
    message: `the image column ${source.imageColumnName} is ${source.imageType}; store base64 text or the image's bytes (bytea)`,
  };
}

function byTable<T extends SourceRow>(rows: T[], sources: Source[]): [Source, T[]][] {
  return sources.map((s) => [s, rows.filter((r) => r.table === s.table)] as [Source, T[]]).filter(([, list]) => list.length > 0);
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** One writer: batches are saved one after the other, while the caller goes on; the first failure stops it. */
class SaveQueue {
  private tail: Promise<void> = Promise.resolve();
  failure: unknown = null;
  readonly saved = new Set<number>();

  constructor(private readonly save: (features: NewFeature[], extracted: number) => Promise<number[]>) {}

  push(features: NewFeature[], extracted: number): void {
    if (features.length === 0) return;
    this.tail = this.tail.then(async () => {
      if (this.failure) return;
      try {
        for (const id of await this.save(features, extracted)) this.saved.add(id);
      } catch (error) {
        this.failure = error;
      }
    });
  }

  async drain(): Promise<void> {
    await this.tail;
    if (this.failure) throw this.failure;
  }
}

export class Extraction {
  private readonly started = performance.now();
  private lastLog = this.started;
  private readonly counts = { extracted: 0, reused: 0, failed: 0 };
  private readonly saves: SaveQueue;

  constructor(
    private readonly options: ExtractionOptions,
    private readonly sources: Source[],
  ) {
    this.saves = new SaveQueue((features, extracted) => this.save(features, extracted));
  }

  /** Extracts (or reuses) the fresh rows, then deletes the cache rows of the gone faces. */
  async run(fresh: SourceRow[], gone: Face[]): Promise<ExtractionReport> {
    for (const chunk of chunks(fresh, DIGEST_CHUNK)) {
      if (this.halted()) break;
      await this.processChunk(chunk);
    }
    await this.saves.drain();
    // An upsert into a reused row slot keeps the slot's id: never delete what was just saved.
    const removable = gone.map((f) => f.featureId).filter((id) => !this.saves.saved.has(id));
    if (removable.length > 0 && !this.options.stopped()) {
      const version = await this.options.fenced((tx) => this.options.cache.remove(tx, removable));
      this.options.onSaved(version, 0);
    }
    const seconds = Math.round(performance.now() - this.started) / 1000;
    return { images: fresh.length, ...this.counts, removed: gone.length, seconds, imagesPerSecond: this.rate() };
  }

  private halted(): boolean {
    return this.options.stopped() || this.saves.failure !== null;
  }

  private rate(): number {
    const seconds = (performance.now() - this.started) / 1000;
    return seconds > 0 ? Math.round((this.counts.extracted / seconds) * 10) / 10 : 0;
  }

  /** Digests a chunk of new rows, reuses known outcomes, extracts the rest. Rows of an unsupported image column are recorded as such, never read. */
  private async processChunk(rows: SourceRow[]): Promise<void> {
    const { db, cache } = this.options;
    const digested: DigestedRow[] = [];
    const unread: NewFeature[] = [];
    for (const [source, list] of byTable(rows, this.sources)) {
      if (source.imageKind === 'unsupported') unread.push(...list.map((row) => ({ row, digest: null, outcome: unsupported(source) })));
      else digested.push(...(await digestSourceRows(db, source, list.map((r) => r.ctid))));
    }
    this.saves.push(unread, 0);
    this.counts.failed += unread.length;
    const known = await cache.findByDigest([...new Map(digested.map((r) => [r.digest.toString('hex'), r.digest])).values()]);
    const reused: NewFeature[] = [];
    const pending: DigestedRow[] = [];
    for (const row of digested) {
      const outcome = known.get(row.digest.toString('hex'));
      if (outcome) reused.push({ row: { table: row.table, ctid: row.ctid, xmin: row.xmin, visitorId: row.visitorId }, digest: row.digest, outcome });
      else pending.push(row);
    }
    this.saves.push(reused, 0);
    this.counts.reused += reused.length;
    await this.extractAll(pending);
  }

  /**
   * `concurrency` workers take rows one by one; images are fetched a batch at a time, one fetch
   * ahead at most, and outcomes go to the save queue a batch at a time.
   */
  private async extractAll(rows: SourceRow[]): Promise<void> {
    const batches = chunks(rows, this.options.batchSize);
    let images: ImageRow[] = [];
    let fetching: Promise<void> | null = null;
    let done: NewFeature[] = [];
    const flush = () => {
      this.saves.push(done, done.length);
      done = [];
    };
    const take = async (): Promise<ImageRow | undefined> => {
      while (images.length === 0 && (batches.length > 0 || fetching)) {
        fetching ??= this.fetch(batches.shift()!).then((fetched) => {
          images.push(...fetched);
          fetching = null;
        });
        await fetching;
      }
      return images.shift();
    };
    const worker = async () => {
      try {
        for (let row = await take(); row && !this.halted(); row = await take()) {
          const outcome = await this.extract(storedImage(row.image));
          const { table, ctid, xmin, visitorId } = row;
          done.push({ row: { table, ctid, xmin, visitorId }, digest: digestOf(row.image), outcome });
          this.counts.extracted++;
          if (outcome.status === 'failed') this.counts.failed++;
          if (done.length >= this.options.batchSize) flush();
          this.tick(rows.length);
        }
      } catch (error) {
        // The other workers stop at their next image.
        this.saves.failure ??= error;
        throw error;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, rows.length) }, worker));
    flush();
  }

  private async fetch(rows: SourceRow[]): Promise<ImageRow[]> {
    const out: ImageRow[] = [];
    for (const [source, list] of byTable(rows, this.sources)) out.push(...(await fetchSourceImages(this.options.db, source, list.map((r) => r.ctid))));
    return out;
  }

  private tick(total: number): void {
    if (performance.now() - this.lastLog < PROGRESS_EVERY_MS) return;
    this.lastLog = performance.now();
    this.options.logger.info({ done: this.counts.extracted + this.counts.reused, total, imagesPerSecond: this.rate() }, 'gallery sync progress');
  }

  private async extract(image: string | Buffer): Promise<Outcome> {
    try {
      const result = await this.options.extractor(image);
      if (!result.ok) return { status: 'failed', reason: result.reason, message: result.message };
      const { embedding, box, score, rotation } = result.face;
      if (embedding.length !== this.options.dimension) {
        throw new FaceRecogError('internal', `the extractor returned ${embedding.length} dimensions; the gallery expects ${this.options.dimension}`);
      }
      return { status: 'ok', embedding, box, score, rotation, reason: result.reason };
    } catch (error) {
      if (error instanceof FaceRecogError && IMAGE_ERRORS.has(error.code)) return { status: 'failed', reason: 'invalid_image', message: message(error) };
      throw error;
    }
  }

  /** Writes the outcomes in a fenced transaction, then shows them to the catalog; returns their ids. */
  private async save(features: NewFeature[], extracted: number): Promise<number[]> {
    const { ids, version } = await this.options.fenced((tx) => this.options.cache.save(tx, features));
    const cached: CachedFeature[] = features.map((f, i) => ({
      id: ids[i],
      source: { table: f.row.table, ctid: f.row.ctid, xmin: f.row.xmin, visitorId: f.row.visitorId },
      visitorId: f.row.visitorId,
      embedding: f.outcome.status === 'ok' ? f.outcome.embedding : null,
    }));
    await this.options.catalog.add(cached);
    this.options.onSaved(version, extracted);
    return ids;
  }
}
