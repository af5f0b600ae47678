#!/usr/bin/env node
// The face-recog command. Each command group lives in commands/<group>.ts and registers itself here.
import { Command, CommanderError } from 'commander';
import { FaceRecogError } from '../errors.js';
import { ConfigError } from '../config.js';
import { registerEngineCommands } from './commands/engine.js';
import { registerVisitorsCommands } from './commands/visitors.js';
import { registerGalleryCommands } from './commands/gallery.js';
import { registerDbCommands } from './commands/db.js';

const program = new Command('face-recog')
  .description('Face detection and recognition service (YuNet + SFace/MobileFaceNet on onnxruntime-node)')
  .showHelpAfterError()
  .exitOverride();

registerEngineCommands(program);
registerVisitorsCommands(program);
registerGalleryCommands(program);
registerDbCommands(program);

/**
 * One line for a person: our own errors say what to do; the system's (a missing file, a refused
 * connection) and PostgreSQL's carry a code and a message that stands alone. Anything else is a
 * bug, shown with its stack when LOG_LEVEL=debug.
 */
function failureLine(error: unknown): string {
  if (error instanceof FaceRecogError || error instanceof ConfigError) return error.message;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  if (typeof (error as { code?: unknown } | null)?.code === 'string') return message;
  return `unexpected error: ${message}${process.env.LOG_LEVEL === 'debug' ? '' : ' (LOG_LEVEL=debug shows where)'}`;
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  console.error(`face-recog: ${failureLine(error)}`);
  if (process.env.LOG_LEVEL === 'debug' && error instanceof Error) console.error(error.stack);
  process.exit(1);
}
