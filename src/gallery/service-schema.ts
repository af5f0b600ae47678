// Where the service keeps what it creates: one schema of its own (DATABASE_SCHEMA, default
// face_recog) holding the feature cache, the migrations table and the notify triggers' function.
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

  constructor(name: string) {
    this.name = name;
    this.quoted = pg.escapeIdentifier(name);
    // The names keep their face_recog_ prefix, so that pointing DATABASE_SCHEMA at a shared
    // schema cannot collide with anyone's "features" or "migrations".
    this.features = this.qualify(FEATURES_TABLE);
    this.migrations = this.qualify(MIGRATIONS_TABLE);
    this.notifyFunction = this.qualify(NOTIFY_FUNCTION);
  }

  qualify(name: string): string {
    return `${this.quoted}.${pg.escapeIdentifier(name)}`;
  }
}

export const FEATURES_TABLE = 'face_recog_features';
export const MIGRATIONS_TABLE = 'face_recog_migrations';
export const NOTIFY_FUNCTION = 'face_recog_notify';
