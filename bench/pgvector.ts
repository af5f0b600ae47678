// The gallery search inside PostgreSQL with pgvector (README "Beyond one machine's memory"),
// against the in-memory index in the same run, on the same faces and queries as bench/search.ts
// (random unit vectors, each query a stored face moved by about the distance between two photos
// of one person). For each size: the exact scan, HNSW and IVFFlat, each through the design's one
// statement that also confirms the source rows; the recall of the approximate indexes against
// the exact answer; the bytes per face on disk (all of it held in shared buffers here); the
// shared buffers one search reads; the index build time.
//   tsx bench/pgvector.ts [--faces 100000,1000000] [--runs 20] [--quick]
// Needs pgvector for the system PostgreSQL (bash .ci/pgvector.sh). Writes bench/results/pgvector.json.
import { spawnSync } from 'node:child_process';
import { VectorIndex, type Hit } from '../src/gallery/vector-index.js';
import { vectorsAt } from '../test/helpers/vectors.js';
import {
  createIndex,
  createTables,
  DIMENSION,
  extensionVersion,
  FEATURES,
  nearby,
  pgvectorMissing,
  recall,
  SearchSession,
  seeded,
  startPgvectorServer,
  storeFaces,
  unitVector,
  VISITOR_IMAGES,
  VISITORS,
  type IndexKind,
  type SearchMode,
  type SqlHit,
} from '../test/helpers/pgvector.js';
import { latencyOf, machine, median, QUICK, round2, timeInterleaved, writeResult, type Latency } from './common.js';

/** Candidates the gallery asks for first (src/gallery/index.ts). */
const K = 8;
const FACES_PER_IMAGE = 8;
/** As bench/search.ts: about the distance between two photos of one person. */
const QUERY_NOISE = 0.05;
/** Queries whose answers are compared with the exact ones: stored faces seen again, and strangers. */
const RECALL_QUERIES = 100;
const PAGE = 10_000;
const DATABASE = 'gallery';
/** Enough for a million faces' table and both indexes: every search below reads shared buffers only. */
const SETTINGS = { sharedBuffers: '3GB', maintenanceWorkMem: '3GB' };
const PAGE_BYTES = 8192;
/** pgvector's defaults (m = 16, ef_construction = 64; ef_search = 40), and wider searches. */
const EF_SEARCH = [40, 100, 400];
/** pgvector's advice: lists = rows / 1000, probes = sqrt(lists). */
const ROWS_PER_LIST = 1000;

const option = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? undefined : process.argv[at + 1];
};
const sizes = (option('faces') ?? (QUICK ? '10000' : '100000,1000000')).split(',').map(Number);
const runs = Number(option('runs') ?? (QUICK ? 5 : 20));

interface Variant {
  name: string;
  mode: SearchMode;
  /** Session settings beyond the mode's. */
  settings: string[];
  /** The design's statement, source rows confirmed in it; false only to price that confirmation. */
  confirmed: boolean;
}

interface VariantResult {
  /** One image's faces, 1 and 8. */
  search_ms: { one: Latency; eight: Latency };
  /** Planted queries whose best hit is the stored face they were made from. */
  match_found: number;
  /** Of the exact 8 best, the fraction returned: for the planted queries, and for strangers (faces not stored). */
  recall_at_8: { seen: number; strangers: number };
  /** Shared buffers one search reads (8 kB each), 1 query. */
  buffers_one: number;
  megabytes_read_one: number;
}

interface SizeResult {
  faces: number;
  load_s: number;
  bytes_per_face: Record<string, number>;
  build_s: Record<string, number>;
  in_memory_index: { search_ms: { one: Latency; eight: Latency } };
  /** in-memory / pgvector medians: under 1, pgvector is slower. */
  pgvector: Record<string, VariantResult & { speed_vs_in_memory: { one: number; eight: number } }>;
  /** The confirmation folded into the statement: HNSW (ef_search 40) with it over without, one query, medians. */
  confirmation_cost_ratio: number;
}

function withIds(hits: Hit[][], ids: number[]): SqlHit[][] {
  return hits.map((list) => list.map((h) => ({ featureId: ids[h.key], visitorId: `v${h.key}`, similarity: h.similarity })));
}

async function relationBytes(server: Awaited<ReturnType<typeof startPgvectorServer>>, relation: string): Promise<number> {
  const [row] = await server.sql<{ bytes: string }>('SELECT pg_relation_size($1)::text AS bytes', [relation], DATABASE);
  return Number(row.bytes);
}

let versions = { pgvector: '', postgres: '' };

async function measureSize(faces: number): Promise<SizeResult> {
  const random = seeded(faces);
  const vectors = Array.from({ length: faces }, () => unitVector(random));
  const image = Array.from({ length: FACES_PER_IMAGE }, (_, i) => nearby(vectors[Math.floor((i * faces) / FACES_PER_IMAGE)], random, QUERY_NOISE));
  const plantedFrom = Array.from({ length: RECALL_QUERIES }, () => Math.floor(random() * faces));
  const recallQueries = [...plantedFrom.map((i) => nearby(vectors[i], random, QUERY_NOISE)), ...Array.from({ length: RECALL_QUERIES }, () => unitVector(random))];

  const server = await startPgvectorServer(DATABASE, SETTINGS);
  const [{ server_version: postgresVersion }] = await server.sql<{ server_version: string }>('SHOW server_version');
  versions = { pgvector: await extensionVersion(server, DATABASE), postgres: postgresVersion };
  try {
    await createTables(server, DATABASE);
    let started = performance.now();
    const ids: number[] = [];
    for (let start = 0; start < faces; start += PAGE) {
      const page = vectors.slice(start, start + PAGE).map((vector, i) => ({
        vector,
        visitorId: `v${start + i}`,
        table: (start + i) % 2 === 0 ? VISITORS : VISITOR_IMAGES,
      }));
      ids.push(...(await storeFaces(server, DATABASE, page)));
    }
    await server.sql('VACUUM ANALYZE', [], DATABASE);
    const loadS = (performance.now() - started) / 1000;

    const index = await VectorIndex.create(DIMENSION);
    for (let start = 0; start < faces; start += PAGE) {
      await index.add(vectors.slice(start, start + PAGE).map((vector, i) => ({ key: start + i, vector })));
    }
    const source = vectorsAt(vectors);
    const truth = withIds(await index.search(recallQueries, K, source), ids);
    const bytes: Record<string, number> = {
      in_memory_index: Math.round(index.allocatedBytes / faces),
      feature_rows: Math.round((await relationBytes(server, FEATURES)) / faces),
    };
    const build: Record<string, number> = {};
    const results: SizeResult['pgvector'] = {};

    const measure = async (variants: Variant[]) => {
      const sessions = await Promise.all(variants.map((v) => SearchSession.open(server, DATABASE, v.mode, v.settings)));
      const fns: Record<string, () => Promise<unknown>> = { in_memory_1: () => index.search(image.slice(0, 1), K, source), in_memory_8: () => index.search(image, K, source) };
      variants.forEach(({ name, confirmed }, v) => {
        fns[`${name}_1`] = () => sessions[v].search(image.slice(0, 1), K, confirmed);
        fns[`${name}_8`] = () => sessions[v].search(image, K, confirmed);
      });
      const times = await timeInterleaved(runs, fns);
      for (const [v, { name, confirmed }] of variants.entries()) {
        const answers = await sessions[v].search(recallQueries, K, confirmed);
        const buffers = await sessions[v].buffersRead(image.slice(0, 1), K, confirmed);
        await sessions[v].close();
        results[name] = {
          search_ms: { one: latencyOf(times[`${name}_1`]), eight: latencyOf(times[`${name}_8`]) },
          match_found: round2(plantedFrom.filter((_, q) => answers[q][0]?.featureId === ids[plantedFrom[q]]).length / RECALL_QUERIES),
          recall_at_8: {
            seen: round2(recall(answers.slice(0, RECALL_QUERIES), truth.slice(0, RECALL_QUERIES))),
            strangers: round2(recall(answers.slice(RECALL_QUERIES), truth.slice(RECALL_QUERIES))),
          },
          buffers_one: buffers,
          megabytes_read_one: round2((buffers * PAGE_BYTES) / 1e6),
          speed_vs_in_memory: {
            one: round2(median(times.in_memory_1) / median(times[`${name}_1`])),
            eight: round2(median(times.in_memory_8) / median(times[`${name}_8`])),
          },
        };
      }
      return times;
    };

    const memory = await measure([{ name: 'exact', mode: 'exact', settings: [], confirmed: true }]);
    const inMemory = { search_ms: { one: latencyOf(memory.in_memory_1), eight: latencyOf(memory.in_memory_8) } };

    const buildIndex = async (kind: IndexKind, lists?: number) => {
      started = performance.now();
      const name = await createIndex(server, DATABASE, kind, lists);
      build[kind] = round2((performance.now() - started) / 1000);
      bytes[kind] = Math.round((await relationBytes(server, name)) / faces);
      return name;
    };

    const hnsw = await buildIndex('hnsw');
    const hnswVariants: Variant[] = EF_SEARCH.map((ef) => ({ name: `hnsw_ef${ef}`, mode: 'index', settings: [`hnsw.ef_search = ${ef}`], confirmed: true }));
    const unconfirmed = { ...hnswVariants[0], name: 'hnsw_ef40_unconfirmed', confirmed: false };
    const times = await measure([...hnswVariants, unconfirmed]);
    const confirmationCost = round2(median(times.hnsw_ef40_1) / median(times.hnsw_ef40_unconfirmed_1));
    delete results.hnsw_ef40_unconfirmed;
    await server.sql(`DROP INDEX ${hnsw}`, [], DATABASE);

    const lists = Math.max(1, Math.round(faces / ROWS_PER_LIST));
    await buildIndex('ivfflat', lists);
    const probes = Math.max(1, Math.round(Math.sqrt(lists)));
    await measure([{ name: `ivfflat_probes${probes}`, mode: 'index', settings: [`ivfflat.probes = ${probes}`], confirmed: true }]);
    await index.close();
    return {
      faces,
      load_s: round2(loadS),
      bytes_per_face: bytes,
      build_s: build,
      in_memory_index: inMemory,
      pgvector: results,
      confirmation_cost_ratio: confirmationCost,
    };
  } finally {
    await server.destroy();
  }
}

if (pgvectorMissing) throw new Error(pgvectorMissing);
const started = performance.now();
const results: SizeResult[] = [];
for (const faces of sizes) {
  results.push(await measureSize(faces));
  console.error(`${faces} faces measured`);
}
const output = {
  generated_by: 'bench/pgvector.ts',
  machine: machine(),
  ...versions,
  built_by: '.ci/pgvector.sh (Debian source package pgvector, native, OPTFLAGS empty as Debian builds it)',
  gcc: spawnSync('gcc', ['-dumpfullversion'], { encoding: 'utf8' }).stdout.trim(),
  settings: { ...SETTINGS, jit: 'off', max_parallel_workers_per_gather: 2 },
  k: K,
  runs,
  sizes: results,
  duration_s: round2((performance.now() - started) / 1000),
};
console.log(JSON.stringify(output, null, 2));
console.log(`written to ${writeResult('pgvector', output)}`);
process.exit(0);
