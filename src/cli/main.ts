// The executable entry point (bin/mta.js imports the compiled form).
import { main } from './mta.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mta: internal error: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);

// A closed stdout (`mta test | head`) is not an internal error: stop quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
