// npm runs this at install: node-gyp builds the addon against the headers that come with the
// running Node.js where they are there (official binaries ship include/node), so that nothing is
// downloaded. A failure (no compiler, say) fails this optional package only: npm leaves it out
// and the service uses the WebAssembly kernel.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join, resolve } = require('node:path');

const prefix = resolve(process.execPath, '..', '..');
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const gyp = spawnSync('node-gyp', ['rebuild', ...nodedir], { stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(gyp.status ?? 1);
