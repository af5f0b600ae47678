// A Gallery over embeddings held in memory, for the server tests (the PostgreSQL gallery has its
// own tests). Visitors are enrolled from real photos through the real engine.
import { cosineSimilarity } from '../../../src/engine/embed.js';
import { FaceRecogError } from '../../../src/errors.js';
import type { ImagePage } from '../../../src/gallery/images.js';
import type { Gallery, GalleryStatus, Match } from '../../../src/gallery/types.js';
import { loadTestImage, testEngine } from '../../helpers/fixtures.js';

export class MemoryGallery implements Gallery {
  readonly entries: { visitorId: string; embedding: Float32Array }[] = [];
  /** When set, the database is "down": search throws and status says so. */
  outage: string | null = null;
  syncing = false;
  searches = 0;
  closed = false;

  /** Adds the most confident face of a test photo as an image of `visitorId`. */
  async enroll(visitorId: string, photo: string): Promise<void> {
    const engine = await testEngine();
    const [face] = await engine.analyze(await loadTestImage(photo), {}, 1);
    if (!face) throw new Error(`no face in ${photo}`);
    this.entries.push({ visitorId, embedding: face.embedding });
  }

  async search(queries: Float32Array[]): Promise<(Match | null)[]> {
    this.searches++;
    if (this.outage) throw new FaceRecogError('gallery_unavailable', `the visitor database is unavailable: ${this.outage}`, { retryAfterS: 2 });
    return queries.map((query) => {
      let best: Match | null = null;
      for (const entry of this.entries) {
        const similarity = cosineSimilarity(query, entry.embedding);
        if (!best || similarity > best.similarity) best = { visitorId: entry.visitorId, similarity };
      }
      return best;
    });
  }

  status(): GalleryStatus {
    return {
      database: this.outage ? 'down' : 'up',
      syncing: this.syncing,
      faces: this.entries.length,
      visitors: new Set(this.entries.map((e) => e.visitorId)).size,
      failed: 0,
      model: 'mobilefacenet',
      lastSyncAt: new Date(0).toISOString(),
      error: this.outage,
      problems: [],
      role: 'extractor',
      extractions: 0,
    };
  }

  /** No stored images: the images endpoint has its own tests against PostgreSQL. */
  async images(): Promise<ImagePage> {
    return { images: [], next: null };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
