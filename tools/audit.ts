// `npm run audit` (a step of .ci/run, not of `npm test`: it asks the registry's advisory service
// over the network): `npm audit --omit=dev`, failing on any high or critical advisory against a
// production dependency. Where the advisory service cannot be reached (a registry mirror without
// it), it says so and does not fail: nothing was checked, and the line says that too.
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../test/helpers/paths.js';

const AUDIT_TIMEOUT_MS = 120_000;

export interface AuditVerdict {
  /** Whether the advisory service answered. */
  checked: boolean;
  failed: boolean;
  message: string;
}

/** The verdict on `npm audit --json` output. */
export function auditVerdict(json: string): AuditVerdict {
  let report: { metadata?: { vulnerabilities?: Record<string, number> }; message?: string; error?: { summary?: string } } = {};
  try {
    report = JSON.parse(json || '{}');
  } catch {
    return { checked: false, failed: false, message: `npm audit printed no report: ${json.slice(0, 200)}` };
  }
  const counts = report.metadata?.vulnerabilities;
  if (!counts) {
    return { checked: false, failed: false, message: `npm audit could not reach the advisory service, nothing checked: ${report.message ?? report.error?.summary ?? 'no report'}` };
  }
  const serious = (counts.high ?? 0) + (counts.critical ?? 0);
  return { checked: true, failed: serious > 0, message: `npm audit --omit=dev: ${JSON.stringify(counts)}` };
}

async function main(): Promise<void> {
  const { stdout } = await promisify(execFile)('npm', ['audit', '--omit=dev', '--json'], { cwd: REPO_ROOT, timeout: AUDIT_TIMEOUT_MS }).catch(
    // npm audit exits non-zero when it finds something, or cannot ask: its JSON says which.
    (error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }),
  );
  const verdict = auditVerdict(stdout);
  console.log(verdict.message);
  process.exitCode = verdict.failed ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
