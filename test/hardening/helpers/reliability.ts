// The reliability table (docs/reliability.md) is kept current by the hardening tests themselves:
// each suite tallies what it tried and what happened, writes the tally to
// test-output/reliability/<suite>.json, and, when the whole suite ran, checks that the committed
// table shows exactly those rows. `npx tsx test/hardening/reliability-doc.ts` rewrites the table
// from the JSON files.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunnerTask, RunnerTestSuite } from 'vitest';
import { REPO_ROOT } from '../../helpers/paths.js';

export const TALLY_DIR = join(REPO_ROOT, 'test-output', 'reliability');
export const RELIABILITY_DOC = join(REPO_ROOT, 'docs', 'reliability.md');

export interface CaseTally {
  case: string;
  tried: number;
  /** Outcome ("400 invalid_image", "200", "exit 1: ...") -> how many times. */
  outcomes: Record<string, number>;
}

export interface SuiteTally {
  suite: string;
  title: string;
  /** The test file, shown in the table's heading. */
  file: string;
  cases: CaseTally[];
  /** Measurements of the last run (memory, counts that vary): shown, never compared. */
  notes: string[];
}

export class Reliability {
  private readonly tally: SuiteTally;

  constructor(suite: string, title: string, file: string) {
    this.tally = { suite, title, file, cases: [], notes: [] };
  }

  /** Counts one try of `name` (or `count` of them) that ended in `outcome`. */
  record(name: string, outcome: string, count = 1): void {
    let row = this.tally.cases.find((c) => c.case === name);
    if (!row) {
      row = { case: name, tried: 0, outcomes: {} };
      this.tally.cases.push(row);
    }
    row.tried += count;
    row.outcomes[outcome] = (row.outcomes[outcome] ?? 0) + count;
  }

  note(text: string): void {
    this.tally.notes.push(text);
  }

  save(): void {
    mkdirSync(TALLY_DIR, { recursive: true });
    writeFileSync(join(TALLY_DIR, `${this.tally.suite}.json`), `${JSON.stringify(this.tally, null, 2)}\n`);
  }

  /**
   * The suite's afterAll (`afterAll((suite) => reliability.finish(suite))`): writes the tally, then
   * fails the suite when docs/reliability.md does not show it. Only a run of the whole suite, every
   * test passed, has the whole tally: after a partial run (vitest -t) or a failed test the table
   * is not compared, and the log says so.
   */
  finish(suite: Readonly<RunnerTestSuite>): void {
    this.save();
    const notPassed = testsOf(suite).filter((test) => test.result?.state !== 'pass');
    if (notPassed.length > 0) {
      console.warn(`docs/reliability.md not compared with the '${this.tally.suite}' tally: ${notPassed.length} of its tests did not run or pass`);
      return;
    }
    const differences = this.differencesFromDoc();
    if (differences.length > 0) {
      throw new Error(
        `docs/reliability.md does not show the '${this.tally.suite}' tally of this run ` +
          `(npx vitest run test/hardening && npx tsx test/hardening/reliability-doc.ts rewrites it):\n${differences.join('\n')}`,
      );
    }
  }

  /** Rows of this suite's table that differ between this run and docs/reliability.md. */
  differencesFromDoc(): string[] {
    const ours = tableRows(this.tally);
    const committed = committedRows(readFileSync(RELIABILITY_DOC, 'utf8'), this.tally.suite);
    if (committed === null) return [`docs/reliability.md has no section for suite '${this.tally.suite}'`];
    return [
      ...ours.filter((row) => !committed.includes(row)).map((row) => `missing from the doc: ${row}`),
      ...committed.filter((row) => !ours.includes(row)).map((row) => `not tried by this run: ${row}`),
    ];
  }
}

function testsOf(task: RunnerTask): RunnerTask[] {
  return task.type === 'suite' ? task.tasks.flatMap(testsOf) : [task];
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** "400 invalid_image ×3, 200 ×1": most frequent first, then by name. */
export function outcomeText(outcomes: Record<string, number>): string {
  return Object.entries(outcomes)
    .sort(([a, m], [b, n]) => n - m || a.localeCompare(b))
    .map(([outcome, n]) => `${outcome} ×${n}`)
    .join(', ');
}

export function tableRows(tally: SuiteTally): string[] {
  return tally.cases.map((c) => `| ${escapeCell(c.case)} | ${c.tried} | ${escapeCell(outcomeText(c.outcomes))} |`);
}

export const sectionStart = (suite: string) => `<!-- reliability:${suite}:begin -->`;
export const sectionEnd = (suite: string) => `<!-- reliability:${suite}:end -->`;

/** The table rows of a suite's section in the doc, or null when the section is absent. */
export function committedRows(doc: string, suite: string): string[] | null {
  const start = doc.indexOf(sectionStart(suite));
  const end = doc.indexOf(sectionEnd(suite));
  if (start < 0 || end < start) return null;
  return doc
    .slice(start, end)
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| case |'));
}
