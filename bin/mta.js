#!/usr/bin/env node
// The installed entry point: runs the compiled CLI (npm run build produces dist/).
import('../dist/src/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('mta: dist/ is missing; run "npm run build" first\n');
    process.exit(2);
  }
  throw err;
});
