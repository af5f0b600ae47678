// Where the service keeps what it creates: one schema of its own (DATABASE_SCHEMA, default
// face_recog) holding the feature cache, the migrations table, the notify triggers' function and
// what the replicas coordinate through (the extractor's lease, the cache's removals).
// Nothing is created anywhere else, so a role that may only read the visitor tables and owns this
// schema runs the service.
import pg from 'pg';

export const DEFAULT_DATABASE_SCHEMA = 'face_recog';

/** Lower-case SQL identifiers only: the same name quoted or not, in our SQL and in the DBA's. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export class ServiceSchema {
  readonly name: string;
  /** The schema, quoted. */
  readonly quoted: string;
  /** The tables and function, schema-qualified and quoted. */
  readonly features: string;
  readonly migrations: string;
  readonly notifyFunction: string;
  /** Feature ids removed, in the order of the cache's versions, for the replicas that follow it. */
  readonly removals: string;
  /** Which replica extracts, per model (see lease.ts). */
  readonly leases: string;
  /** Numbers every write to the cache, so that followers read what changed since their last look. */
  readonly versions: string;

  constructor(name: string) {
    this.name = name;
    this.quoted = pg.escapeIdentifier(name);
    // The names keep their face_recog_ prefix, so that pointing DATABASE_SCHEMA at a shared
    // schema cannot collide with anyone's "features" or "migrations".
    this.features = this.qualify(FEATURES_TABLE);
    this.migrations = this.qualify(MIGRATIONS_TABLE);
    this.notifyFunction = this.qualify(NOTIFY_FUNCTION);
    this.removals = this.qualify(REMOVALS_TABLE);
    this.leases = this.qualify(LEASES_TABLE);
    this.versions = this.qualify(VERSIONS_SEQUENCE);
  }

  qualify(name: string): string {
    return `${this.quoted}.${pg.escapeIdentifier(name)}`;
  }
}

export const FEATURES_TABLE = 'face_recog_features';
export const MIGRATIONS_TABLE = 'face_recog_migrations';
export const NOTIFY_FUNCTION = 'face_recog_notify';
export const REMOVALS_TABLE = 'face_recog_removals';
export const LEASES_TABLE = 'face_recog_leases';
export const VERSIONS_SEQUENCE = 'face_recog_versions';
/** NOTIFY channel on which the extracting replica announces writes to the cache (payload: the model). */
export const CACHE_CHANNEL = 'face_recog_features';
