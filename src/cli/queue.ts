// `mta queue` (SPEC §11.5): look at and act on the spool, safely while a
// server runs on it. Every change is a rename (Spool.move / Spool.remove),
// so a delivery worker and this command never both own a message: whoever
// renames it first wins, and the other sees it gone. The running server
// notices the result at its next scan (≤ 10 s).
//
//   mta queue list [--json]
//   mta queue show ID [--body] [--json]
//   mta queue retry ID | --all
//   mta queue remove ID [--yes]
//   mta queue quarantine list [--json]
//   mta queue release ID
//
// The spool is `--queue-dir DIR`, else queue.dir of `--config main.vsl`
// (with `--set key=value` overrides), else the queue.dir the caller passes.

import { promises as fs } from 'node:fs';
import { addressText } from '../mail/types.js';
import { type EnvelopeRecord, isOpen } from '../queue/envelope.js';
import { isQueueId } from '../queue/id.js';
import { headerBlock } from '../queue/message.js';
import { ACTIVE, CorruptMessageError, DEFERRED, type Place, placeLabel, Spool } from '../queue/spool.js';

export interface QueueCommandIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** A terminal to ask `remove`'s confirmation on (not a terminal: the answer is no). */
  stdin?: NodeJS.ReadableStream;
  /** queue.dir from the configuration (`--queue-dir` and `--config` in argv win). */
  queueDir?: string;
  /** Yes/no question for `remove` without `--yes` (default: asked on stdin when it is a terminal). */
  confirm?(question: string): Promise<boolean>;
  /** Current time in ms (tests). */
  now?(): number;
}

const USAGE = `usage: mta queue list [--json]
       mta queue show ID [--body] [--json]
       mta queue retry ID | --all
       mta queue remove ID [--yes]
       mta queue quarantine list [--json]
       mta queue release ID
options: --queue-dir DIR | --config main.vsl [--set key=value]...
`;

/** What `list` shows for one message. */
export interface QueueEntry {
  id: string;
  state: string;
  received_at: string | null;
  age_seconds: number | null;
  size: number | null;
  sender: string | null;
  recipients: number | null;
  next_attempt: string | null;
  last_error: string | null;
}

class UsageError extends Error {}

/** Removes control characters (a remote reply or an address must not drive the terminal). */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

function age(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

function size(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}K`;
  return `${(n / 1024 / 1024).toFixed(1)}M`;
}

function shortTime(iso: string | null): string {
  return iso ? iso.replace(/\.\d{3}Z$/, 'Z') : '-';
}

/** The error worth showing: the message's own, or the latest recipient one, or why it is dead. */
function lastError(r: EnvelopeRecord): string | null {
  const open = r.recipients.filter(isOpen).find((x) => x.last_error);
  const failed = r.recipients.find((x) => x.state === 'failed' && x.last_error);
  // A failed recipient's reply says more than the generic dead_reason ("delivery failed for 1 recipient(s)").
  return open?.last_error ?? r.last_error ?? failed?.last_error ?? r.dead_reason ?? null;
}

async function entryFor(spool: Spool, place: Place, id: string, now: number): Promise<QueueEntry> {
  const label = placeLabel(place);
  try {
    const r = await spool.readRecord(place, id);
    const received = Date.parse(r.received_at);
    return {
      id,
      state: label,
      received_at: r.received_at,
      age_seconds: Math.round((now - received) / 1000),
      size: (await spool.messageSize(place, id)) ?? r.size,
      sender: addressText(r.mail_from) || '<>',
      recipients: r.recipients.length,
      next_attempt: place.kind === 'deferred' ? r.next_attempt : null,
      last_error: lastError(r),
    };
  } catch (err) {
    const why = err instanceof CorruptMessageError ? err.message : `unreadable: ${(err as Error).message}`;
    return { id, state: label, received_at: null, age_seconds: null, size: null, sender: null, recipients: null, next_attempt: null, last_error: why };
  }
}

async function entries(spool: Spool, places: Place[], now: number): Promise<QueueEntry[]> {
  const out: QueueEntry[] = [];
  for (const p of places) for (const id of await spool.list(p)) out.push(await entryFor(spool, p, id, now));
  return out;
}

function table(list: QueueEntry[], empty = 'queue is empty'): string {
  if (list.length === 0) return `${empty}\n`;
  const rows = [['ID', 'AGE', 'SIZE', 'STATE', 'RCPTS', 'SENDER', 'NEXT ATTEMPT', 'LAST ERROR']];
  for (const e of list) {
    const err = e.last_error ? clean(e.last_error) : '-';
    rows.push([
      e.id,
      age(e.age_seconds),
      size(e.size),
      e.state,
      e.recipients === null ? '-' : String(e.recipients),
      clean(e.sender ?? '-'),
      shortTime(e.next_attempt),
      err.length > 70 ? `${err.slice(0, 69)}…` : err,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
  return `${lines.join('\n')}\n${list.length} message${list.length === 1 ? '' : 's'}\n`;
}

interface Parsed {
  args: string[];
  flags: Set<string>;
  queueDir?: string;
  config?: string;
  set: string[];
}

function parse(argv: string[]): Parsed {
  const out: Parsed = { args: [], flags: new Set<string>(), set: [] };
  const value = (i: number, name: string): string => {
    const v = argv[i];
    if (v === undefined || v === '') throw new UsageError(`${name} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    if (name === '--queue-dir') out.queueDir = inline ?? value(++i, name);
    else if (name === '--config') out.config = inline ?? value(++i, name);
    else if (name === '--set') out.set.push(inline ?? value(++i, name));
    else if (['--json', '--body', '--yes', '--all', '--help'].includes(a)) out.flags.add(a);
    else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
    else out.args.push(a);
  }
  return out;
}

/** queue.dir of a policy's configuration (loads the policy: on_config and --set apply). */
async function queueDirFromConfig(mainPath: string, set: string[]): Promise<string> {
  const { loadPolicy } = await import('../policy/load.js');
  const { allBuiltins } = await import('../builtins/registry.js');
  const r = await loadPolicy(mainPath, { builtins: allBuiltins(), overrides: { set } });
  if (!r.ok) {
    const first = r.diagnostics[0];
    throw new Error(`cannot load ${mainPath}: ${first ? first.message : 'load error'} (run mta check)`);
  }
  const dir = r.version.config.queue.dir;
  r.version.dispose();
  return dir;
}

/** Asks on a terminal; anything but y/yes is no. */
async function askOnTerminal(io: QueueCommandIo, question: string): Promise<boolean | null> {
  const stdin = io.stdin as (NodeJS.ReadableStream & { isTTY?: boolean }) | undefined;
  if (!stdin || !stdin.isTTY) return null;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

function mask(target: string): string {
  return target.replace(/(\/\/[^:/@]*):[^@/]*@/, '$1:***@');
}

function onlyFlags(flags: Set<string>, allowed: string[]): void {
  for (const f of flags) if (!allowed.includes(f)) throw new UsageError(`option ${f} does not apply here`);
}

function needId(args: string[], n: number): string {
  const id = args[n];
  if (!id || args.length !== n + 1) throw new UsageError('expected one queue id');
  if (!isQueueId(id)) throw new UsageError(`invalid queue id ${JSON.stringify(clean(id))}`);
  return id;
}

/**
 * Makes a quarantined or dead message deliverable again: the operator's
 * decision overrides the policy's, so the remembered status that held it is
 * cleared and stages that did not run are skipped; failed recipients are
 * tried again and the max_age clock restarts. The record is rewritten where
 * it is (only this command writes in dead/ and quarantine/), then the
 * message is renamed into active/.
 */
async function reinject(spool: Spool, place: Place, id: string, now: number): Promise<boolean> {
  const r = await spool.readRecord(place, id);
  for (const x of r.recipients) {
    if (x.state === 'failed') {
      x.state = 'pending';
      x.dsn = 'none';
      x.next_attempt = null;
    }
  }
  for (const s of ['postq', 'delivery'] as const) if (r.stages[s] === 'pending') r.stages[s] = 'skipped';
  if (r.txn_remembered && r.txn_remembered.kind !== 'faccept') r.txn_remembered = null;
  if (r.session.remembered && r.session.remembered.kind !== 'faccept') r.session.remembered = null;
  r.quarantine = null;
  r.dead_reason = null;
  r.next_attempt = null;
  r.age_base = new Date(now).toISOString();
  await spool.writeRecord(place, r);
  return spool.move(id, place, ACTIVE);
}

export async function queueCommand(argv: string[], io: QueueCommandIo): Promise<number> {
  const out = (s: string) => void io.stdout.write(s);
  const err = (s: string) => void io.stderr.write(s);
  const now = io.now?.() ?? Date.now();
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    err(`mta queue: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { args, flags } = parsed;
  if (flags.has('--help')) {
    out(USAGE);
    return 0;
  }
  if (args.length === 0) {
    err(`mta queue: no subcommand given\n${USAGE}`);
    return 2;
  }
  let dir = parsed.queueDir;
  if (dir === undefined && parsed.config !== undefined) {
    try {
      dir = await queueDirFromConfig(parsed.config, parsed.set);
    } catch (e) {
      err(`mta queue: ${(e as Error).message}\n`);
      return 1;
    }
  }
  dir ??= io.queueDir;
  if (!dir) {
    err('mta queue: no queue directory (give --queue-dir or --config)\n');
    return 2;
  }
  const json = flags.has('--json');
  try {
    try {
      await fs.access(dir);
    } catch {
      err(`mta queue: no queue directory ${clean(dir)}\n`);
      return 1;
    }
    const spool = await Spool.open(dir);
    switch (args[0]) {
      case 'list': {
        onlyFlags(flags, ['--json']);
        if (args.length !== 1) throw new UsageError('list takes no arguments');
        const list = await entries(spool, await spool.places(), now);
        out(json ? `${JSON.stringify(list, null, 2)}\n` : table(list));
        return 0;
      }
      case 'quarantine': {
        onlyFlags(flags, ['--json']);
        if (args[1] !== 'list' || args.length !== 2) throw new UsageError('expected "quarantine list"');
        const places = (await spool.places()).filter((p) => p.kind === 'quarantine');
        const list = await entries(spool, places, now);
        out(json ? `${JSON.stringify(list, null, 2)}\n` : table(list, 'no quarantined messages'));
        return 0;
      }
      case 'show': {
        onlyFlags(flags, ['--json', '--body']);
        const id = needId(args, 1);
        const place = await spool.locate(id);
        if (!place) {
          err(`mta queue: ${id}: no such message\n`);
          return 1;
        }
        const record = await spool.readRecord(place, id);
        const message = await spool.readMessage(place, id);
        for (const r of record.recipients) if (r.transport.target !== undefined) r.transport.target = mask(r.transport.target);
        if (json) {
          out(`${JSON.stringify({ state: placeLabel(place), record, ...(flags.has('--body') ? { message: message.toString('utf8') } : {}) }, null, 2)}\n`);
          return 0;
        }
        const e = await entryFor(spool, place, id, now);
        const lines = [
          `id:          ${id}`,
          `state:       ${placeLabel(place)}`,
          `received:    ${shortTime(record.received_at)} (${age(e.age_seconds)} ago)`,
          `size:        ${message.length} bytes`,
          `sender:      ${clean(addressText(record.mail_from) || '<>')}`,
          `client:      ${clean(record.session.client_ip)} (${clean(record.session.helo ?? '-')})${record.session.auth ? `, authenticated as ${clean(record.session.auth.authid)}` : ''}`,
          `attempts:    ${record.attempts}`,
          `next:        ${shortTime(record.next_attempt)}`,
          `stages:      postq ${record.stages.postq}, delivery ${record.stages.delivery}`,
        ];
        if (record.dead_reason) lines.push(`dead:        ${clean(record.dead_reason)}`);
        if (record.quarantine) lines.push(`quarantine:  ${record.quarantine}`);
        lines.push('recipients:');
        for (const r of record.recipients) {
          const t = r.transport.kind === 'forward' ? `forward ${r.transport.target}` : r.transport.kind;
          lines.push(`  ${clean(addressText(r.address))}  ${r.state}  attempts ${r.attempts}  via ${clean(t)}${r.next_attempt ? `  next ${shortTime(r.next_attempt)}` : ''}`);
          if (r.last_error) lines.push(`      ${clean(r.last_error)}`);
        }
        lines.push('');
        out(`${lines.join('\n')}\n`);
        out(flags.has('--body') ? message.toString('utf8') : headerBlock(message).toString('utf8'));
        return 0;
      }
      case 'retry': {
        onlyFlags(flags, ['--all']);
        if (flags.has('--all')) {
          if (args.length !== 1) throw new UsageError('retry --all takes no id');
          let n = 0;
          for (const id of await spool.list(DEFERRED)) if (await spool.move(id, DEFERRED, ACTIVE)) n++;
          out(`${n} deferred message${n === 1 ? '' : 's'} made due now\n`);
          return 0;
        }
        const id = needId(args, 1);
        const place = await spool.locate(id);
        if (!place) {
          err(`mta queue: ${id}: no such message\n`);
          return 1;
        }
        if (place.kind === 'active') {
          out(`${id} is already active\n`);
          return 0;
        }
        const moved = place.kind === 'deferred' ? await spool.move(id, DEFERRED, ACTIVE) : await reinject(spool, place, id, now);
        if (!moved) {
          err(`mta queue: ${id} changed state meanwhile; try again\n`);
          return 1;
        }
        out(place.kind === 'deferred' ? `${id} is due now\n` : `${id} re-injected from ${placeLabel(place)}\n`);
        return 0;
      }
      case 'release': {
        onlyFlags(flags, []);
        const id = needId(args, 1);
        const place = await spool.locate(id);
        if (!place || place.kind !== 'quarantine') {
          err(`mta queue: ${id}: not in a quarantine\n`);
          return 1;
        }
        if (!(await reinject(spool, place, id, now))) {
          err(`mta queue: ${id} changed state meanwhile; try again\n`);
          return 1;
        }
        out(`${id} released from ${placeLabel(place)}\n`);
        return 0;
      }
      case 'remove': {
        onlyFlags(flags, ['--yes']);
        const id = needId(args, 1);
        const place = await spool.locate(id);
        if (!place) {
          err(`mta queue: ${id}: no such message\n`);
          return 1;
        }
        const pid = await spool.schedulerPid();
        if (place.kind === 'active' && pid !== null) {
          err(`mta queue: ${id} is being delivered by the running server (pid ${pid}); remove it once it is deferred\n`);
          return 1;
        }
        if (!flags.has('--yes')) {
          const e = await entryFor(spool, place, id, now);
          const question = `remove ${id} (${e.state}, from ${clean(e.sender ?? '?')}, ${e.recipients ?? '?'} recipients)? [y/N] `;
          const ok = io.confirm ? await io.confirm(question) : await askOnTerminal(io, question);
          if (ok !== true) {
            err(`mta queue: ${id} not removed${ok === null ? ' (not a terminal: use --yes)' : ''}\n`);
            return 1;
          }
        }
        if (!(await spool.remove(id, place))) {
          err(`mta queue: ${id} changed state meanwhile; try again\n`);
          return 1;
        }
        out(`${id} removed\n`);
        return 0;
      }
      default:
        throw new UsageError(args[0] ? `unknown command ${JSON.stringify(clean(args[0]))}` : 'missing command');
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`mta queue: ${e.message}\n${USAGE}`);
      return 2;
    }
    err(`mta queue: ${clean((e as Error).message)}\n`);
    return 1;
  }
}

