// Replicas on one PostgreSQL (test/helpers/replicas.ts: Debian's server, the README's narrow role),
// timed: the contract promises that every replica recognises a new stored image within 2 s and that
// another replica takes over within 10 s when the extractor dies. test/gallery/replicas.test.ts
// checks that they do both; this measures how long they take.
import { postgresMissing } from '../test/helpers/postgres-server.js';
import { ReplicaSet, storedImages } from '../test/helpers/replicas.js';
import { QUICK, latencyOf, round2, type Latency } from './common.js';

const REPLICAS = 3;
const IMAGES = QUICK ? 3 : 10;

export interface ReplicasResult {
  replicas: number;
  /** From each new image's commit until every replica holds its face, one image at a time. */
  recognised_by_all_ms: Latency & { max: number };
  /** From SIGKILL of the idle extractor until another replica holds the extractor's lease. */
  takeover_ms: number;
}

export async function benchReplicas(): Promise<ReplicasResult | null> {
  if (postgresMissing) {
    console.log(`replicas not measured: ${postgresMissing}`);
    return null;
  }
  const images = await storedImages(IMAGES + 1);
  const set = await ReplicaSet.start(REPLICAS, 'built');
  try {
    await set.roles();
    const times: number[] = [];
    const insertAndRecognise = async (id: string, image: string) => {
      const ms = await set.insertAndHold([id], [image]);
      const missed = await set.unrecognised([id], [image]);
      if (missed.length > 0) throw new Error(`replicas holding the new face do not recognise it: ${missed.join(', ')}`);
      return ms;
    };
    for (let i = 0; i < IMAGES; i++) times.push(await insertAndRecognise(`visitor-${i}`, images[i]));
    const takeoverMs = await set.killExtractor(await set.extractor());
    await insertAndRecognise('after-takeover', images[IMAGES]);
    return { replicas: REPLICAS, recognised_by_all_ms: { ...latencyOf(times), max: round2(Math.max(...times)) }, takeover_ms: round2(takeoverMs) };
  } finally {
    await set.stop();
  }
}
