// Bundles the guest runtime (the part of the vSL runtime that runs inside QuickJS)
// into one script, dist/guest/runtime.js, which the sandbox evaluates in every new runtime.
// The guest sources are ordinary TypeScript modules, so Node tests import them directly.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
await build({
  entryPoints: [path.join(root, 'src/vsl/guest/guest-entry.ts')],
  bundle: true,
  format: 'iife',
  platform: 'neutral',
  // es2022 keeps class fields as plain assignments (no defineProperty per
  // object), which QuickJS supports and which is measurably cheaper per evaluation.
  target: 'es2022',
  outfile: path.join(root, 'dist/guest/runtime.js'),
  logLevel: 'warning',
});
