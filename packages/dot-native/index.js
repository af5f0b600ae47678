// The native search kernel, or null where it was not built (no compiler at install) or this CPU
// lacks AVX-512 VNNI: the caller then uses the WebAssembly kernel.
'use strict';
let kernel = null;
try {
  const addon = require('./build/Release/dot_native.node');
  if (addon.supported) kernel = addon;
} catch {
  kernel = null;
}
module.exports = kernel;
