// What .ci/docker asks of a running container, with photos from ../shared/testdata (labels.csv):
//   node .ci/docker-smoke.mjs visitors-sql        SQL a visitor backend would run: the guide's tables and
//                                                 its photos of two people (all but each one's first)
//   node .ci/docker-smoke.mjs check URL           /health 200, then one face from /api/v1/detect
//   node .ci/docker-smoke.mjs check URL --recognize   also: the stored photos become faces, and the first
//                                                 person's held-back photo is recognised as them
// Exits 1 with a message saying what was wrong. Waits poll the service until a deadline that only
// guards against a hang (the container's own start takes seconds).
import { readFileSync } from 'node:fs';

const TESTDATA = new URL('../../shared/testdata/', import.meta.url);
const HEALTH_DEADLINE_MS = 180_000;
const GALLERY_DEADLINE_MS = 120_000;
const POLL_MS = 500;
const REQUEST_TIMEOUT_MS = 15_000;
const PEOPLE = 2;

function fail(message) {
  console.error(`docker-smoke: ${message}`);
  process.exit(1);
}

/** One-face photos by person, in labels.csv order. */
function portraits() {
  let csv;
  try {
    csv = readFileSync(new URL('labels.csv', TESTDATA), 'utf8');
  } catch {
    fail(`no ${new URL('labels.csv', TESTDATA).pathname}: ../shared/testdata must sit beside the repository`);
  }
  const byPerson = new Map();
  for (const line of csv.trim().split('\n').slice(1)) {
    const [path, identity, faces] = line.split(',');
    if (!path.startsWith('faces/') || faces !== '1') continue;
    byPerson.set(identity, [...(byPerson.get(identity) ?? []), path]);
  }
  const people = [...byPerson].filter(([, paths]) => paths.length >= 2).slice(0, PEOPLE);
  if (people.length < PEOPLE) fail(`labels.csv lists fewer than ${PEOPLE} people with two one-face photos`);
  return people.map(([identity, [heldBack, ...stored]]) => ({ identity, heldBack, stored }));
}

function base64(path) {
  return readFileSync(new URL(path, TESTDATA)).toString('base64');
}

function visitorsSql() {
  // Quoted camelCase column, as TypeScript ORMs create it; the service also reads unquoted ones.
  const rows = portraits().flatMap(({ identity, stored }) => stored.map((path) => `('${identity.replaceAll("'", "''")}', '${base64(path)}')`));
  return [
    'CREATE TABLE visitors (visitor_id text PRIMARY KEY, "base64Image" text);',
    'CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, "base64Image" text);',
    `INSERT INTO visitor_images (visitor_id, "base64Image") VALUES ${rows.join(',\n')};`,
  ].join('\n');
}

/** fetch with a deadline: a connection that a port proxy accepts and drops can otherwise hang it. */
async function request(url, init = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)), REQUEST_TIMEOUT_MS);
  try {
    return await fetch(url, { ...init, signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

async function get(url) {
  try {
    const response = await request(url);
    return { status: response.status, body: await response.json().catch(() => null) };
  } catch (error) {
    return { status: 0, body: String(error.cause ?? error) };
  }
}

async function post(url, body) {
  const response = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (response.status !== 200) fail(`POST ${url}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/** Polls /health until `ready(answer)`; fails with the last answer at the deadline. */
async function waitForHealth(base, what, ready, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let last;
  while (Date.now() < deadline) {
    last = await get(`${base}/health`);
    if (ready(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  fail(`${what} not reached within ${deadlineMs / 1000} s; last /health: ${last.status} ${JSON.stringify(last.body)}`);
}

async function check(base, recognize) {
  const started = Date.now();
  await waitForHealth(base, '/health 200', (h) => h.status === 200, HEALTH_DEADLINE_MS);
  console.log(`/health 200 after ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const people = portraits();
  const photo = people[0].heldBack;
  const detected = await post(`${base}/api/v1/detect`, { image: base64(photo) });
  if (detected.count !== 1 || detected.faces?.length !== 1) fail(`detect on ${photo}: expected one face, got ${JSON.stringify(detected)}`);
  console.log(`detect ${photo}: 1 face, confidence ${detected.faces[0].confidence.toFixed(3)}`);
  if (!recognize) return;

  const stored = people.reduce((sum, p) => sum + p.stored.length, 0);
  await waitForHealth(base, `${stored} stored faces`, (h) => h.status === 200 && h.body?.gallery?.faces >= stored, GALLERY_DEADLINE_MS);
  const result = await post(`${base}/api/v1/recognize`, { image: base64(photo) });
  if (!result.matched || result.visitor_id !== people[0].identity) {
    fail(`recognize ${photo}: expected ${people[0].identity}, got ${JSON.stringify({ ...result, faces: undefined })}`);
  }
  console.log(`recognize ${photo}: ${result.visitor_id} (similarity ${result.confidence.toFixed(3)}) among ${stored} stored photos of ${people.length} people`);
}

const [command, base, flag] = process.argv.slice(2);
if (command === 'visitors-sql') console.log(visitorsSql());
else if (command === 'check' && base) await check(base.replace(/\/+$/, ''), flag === '--recognize');
else fail('usage: docker-smoke.mjs visitors-sql | check URL [--recognize]');
