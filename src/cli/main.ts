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

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  if (error instanceof FaceRecogError || error instanceof ConfigError) {
    console.error(`face-recog: ${error.message}`);
    process.exit(1);
  }
  throw error;
}
