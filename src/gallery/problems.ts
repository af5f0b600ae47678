// What keeps the gallery from reading the database, said so that a DBA can act on it: each
// problem names the object and, for a missing permission, the SQL that grants it.
import { FaceRecogError } from '../errors.js';
import { DATABASE_RETRY_AFTER_S, quoteIdentifier } from './db.js';
import type { GalleryProblem } from './types.js';

const BLOCKING = new Set<GalleryProblem['code']>(['permission_denied', 'not_on_search_path']);

/** A problem that makes the gallery unavailable (rather than only some images unread). */
export function isBlocking(problem: GalleryProblem): boolean {
  return BLOCKING.has(problem.code);
}

/** One line for a log, an error or /health: the message, then the SQL that fixes it. */
export function describeProblem(problem: GalleryProblem): string {
  return problem.sql ? `${problem.message}; fix: ${problem.sql}` : problem.message;
}

/** schema.table, quoted as SQL needs it. */
export function relationSql(schema: string, table: string): string {
  return `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`;
}

export function permissionProblem(role: string, table: string | null, message: string, sql: string): GalleryProblem {
  return { code: 'permission_denied', table, message: `the database role ${quoteIdentifier(role)} ${message}`, sql };
}

/**
 * The database refused something the service needs: its problems (with the fixing SQL) travel
 * with the error, to /health and to the CLI's message.
 */
export class DatabasePermissionError extends FaceRecogError {
  readonly problems: GalleryProblem[];

  constructor(problems: GalleryProblem[]) {
    super('gallery_unavailable', problems.map(describeProblem).join('; '), { retryAfterS: DATABASE_RETRY_AFTER_S });
    this.problems = problems;
  }
}
