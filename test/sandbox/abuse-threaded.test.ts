// The abuse suite of abuse.test.ts again, with stage evaluations in a
// worker thread as the server runs them (src/sandbox/thread.ts): timeouts,
// memory and stack limits, I/O built-ins and their errors must behave the
// same on the other side of the thread boundary.

import { runSandboxesInThreads } from '../../src/sandbox/sandbox.js';

runSandboxesInThreads(true);
await import('./abuse.test.js');
