// Plays transcript files (SPEC §11.3) against a policy, in-process: each
// file gets its own TranscriptWorld, each session a client over an
// in-memory socket to the real SMTP front. Every `S:`, `S!:` and `@expect`
// line is one test point; a failed reply check names the rule that decided
// it (file:line), from the front's own decision log.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HostBuiltin } from '../../builtins/host.js';
import { checkExpectation } from './messages.js';
import { parseTranscript, type Step, type Transcript, type TranscriptSession } from './parse.js';
import { PolicyLoadFailure, TranscriptWorld, type WorldSession } from './world.js';

export interface TestPoint {
  ok: boolean;
  /** The transcript as the user named it (relative to the working directory). */
  file: string;
  line: number;
  /** Why it failed: `expected "554", got "250 2.1.5 Ok" (rcpt: rule "relay rcpt" at main.vsl:24:5)`. */
  message?: string;
  /** More lines worth showing (load diagnostics), printed as TAP comments. */
  detail?: string[];
}

export interface RunOptions {
  mainPath: string;
  builtins?: HostBuiltin[];
  hostname?: string;
  /** Called as each test point is decided (TAP is printed as the run goes). */
  onPoint?: (p: TestPoint) => void;
}

export interface TranscriptResult {
  points: TestPoint[];
  /** Files the policy was built from (main.vsl, imports, data files), for `--watch`. */
  policyFiles: string[];
}

export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel === '' || rel.startsWith('..') ? file : rel;
}

/** Reads, parses and plays one transcript file. */
export async function runTranscriptFile(file: string, opts: RunOptions): Promise<TranscriptResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const p: TestPoint = { ok: false, file: displayPath(file), line: 1, message: `cannot read the transcript: ${(e as Error).message}` };
    opts.onPoint?.(p);
    return { points: [p], policyFiles: [] };
  }
  return runTranscript(parseTranscript(text, displayPath(file)), opts);
}

/** Plays a parsed transcript. A transcript with syntax errors is not played: each error is a failed point. */
export async function runTranscript(t: Transcript, opts: RunOptions): Promise<TranscriptResult> {
  const points: TestPoint[] = [];
  const point = (p: TestPoint): void => {
    points.push(p);
    opts.onPoint?.(p);
  };
  if (t.errors.length > 0) {
    for (const e of t.errors) point({ ok: false, file: t.file, line: e.line, message: `syntax error: ${e.message}` });
    return { points, policyFiles: [] };
  }
  const world = new TranscriptWorld({ mainPath: opts.mainPath, builtins: opts.builtins, hostname: opts.hostname });
  try {
    for (const session of t.sessions) await playSession(world, session, t.file, point);
  } finally {
    await world.close();
  }
  return { points, policyFiles: [...world.policyFiles] };
}

function isCheck(s: Step): boolean {
  return s.kind === 'reply' || s.kind === 'expect';
}

/** A step that changes the world (or checks it) rather than talking to the server. */
function applyWorldStep(world: TranscriptWorld, step: Step, file: string, point: (p: TestPoint) => void): void {
  switch (step.kind) {
    case 'dns': world.addRecord(step.record); break;
    case 'user': world.addUser(step.name, step.password); break;
    case 'set': world.addSet(step.assignment); break;
    case 'time': world.setTime(step.ms); break;
    case 'advance': world.advance(step.ms); break;
    case 'expect': {
      const problem = checkExpectation(step.check, world.sink.messages);
      point(problem === null ? { ok: true, file, line: step.line } : { ok: false, file, line: step.line, message: problem });
      break;
    }
    default:
      break;
  }
}

async function playSession(world: TranscriptWorld, session: TranscriptSession, file: string, point: (p: TestPoint) => void): Promise<void> {
  const { steps, connectAt } = session;
  for (const step of steps.slice(0, connectAt)) applyWorldStep(world, step, file, point);
  if (connectAt >= steps.length) return; // a session of directives only: nothing to connect

  let waitMs: number;
  try {
    waitMs = world.replyWaitMs(await world.prepare(session));
  } catch (e) {
    // Every check of the session fails; the first one carries the diagnostics.
    const why = e instanceof PolicyLoadFailure ? e : null;
    let first = true;
    for (const step of steps.slice(connectAt)) {
      if (!isCheck(step)) continue;
      point({
        ok: false, file, line: step.line,
        message: why ? 'the policy did not load' : `the session could not start: ${(e as Error).message}`,
        detail: first && why ? why.diagnostics.flatMap((d) => d.split('\n')) : undefined,
      });
      first = false;
    }
    return;
  }

  let s: WorldSession;
  try {
    s = await world.connect(session);
  } catch (e) {
    for (const step of steps.slice(connectAt)) {
      if (isCheck(step)) point({ ok: false, file, line: step.line, message: `the session could not start: ${(e as Error).message}` });
    }
    return;
  }
  // Once a reply failed to come, later ones will not come either: fail them at once.
  let stalled: string | null = null;
  try {
    for (const step of steps.slice(connectAt)) {
      if (step.kind === 'send') {
        s.client.send(step.text);
        continue;
      }
      if (step.kind !== 'reply') {
        applyWorldStep(world, step, file, point);
        continue;
      }
      const expected = step.prefix === null ? 'a reply' : step.negate ? `a reply not starting with "${step.prefix}"` : `"${step.prefix}"`;
      if (stalled !== null) {
        point({ ok: false, file, line: step.line, message: `expected ${expected}, got nothing: ${stalled}` });
        continue;
      }
      const got = await s.client.nextReply(waitMs);
      if (!('reply' in got)) {
        stalled = 'closed' in got
          ? `the server closed the connection${s.client.problem ? ` (${s.client.problem})` : ''}`
          : `no reply within ${waitMs / 1000}s${s.client.problem ? ` (${s.client.problem})` : ''}`;
        point({ ok: false, file, line: step.line, message: `expected ${expected}, got nothing: ${stalled}` });
        continue;
      }
      const reply = got.reply;
      const decider = s.deciderOf(reply);
      const matches = step.prefix === null || reply.first.startsWith(step.prefix);
      if (matches !== step.negate) {
        point({ ok: true, file, line: step.line });
      } else {
        point({ ok: false, file, line: step.line, message: `expected ${expected}, got "${reply.first}"${decider ? ` (${decider})` : ''}` });
      }
    }
  } finally {
    await s.close();
  }
}
