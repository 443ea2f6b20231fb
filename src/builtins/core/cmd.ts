// cmd services (SPEC §7.12, privileged: only with `vsl.allow_cmd`, §13): run
// one program, without a shell, with `PATH=/usr/bin:/bin` as its whole
// environment, killed with its process group after `timeout`. The result is
// `#{ has_code, code, has_signal, signal }`; output is discarded but for its
// first 4 KiB, which go to the debug log.

import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { fnError, type Value } from '../../vsl/values/value.js';
import type { HostCall } from '../host.js';

export const CMD_PATH = '/usr/bin:/bin';
const OUTPUT_LOGGED = 4096;

export interface CmdOptions {
  /** Program to run: an absolute path, or a name looked up in CMD_PATH. */
  command: string;
  args: string[];
  timeoutMs: number;
  /** Working directory: the directory of the declaring file. */
  cwd: string;
  /** Set only when the declaration named a user/group (the server runs as root). */
  uid?: number;
  gid?: number;
}

export interface CmdResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  output: string;
}

/** Runs the program once; never rejects for the program's own failure, only when it cannot be started. */
export function runProgram(opts: CmdOptions, args: string[]): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.command, args, {
      shell: false,
      env: { PATH: CMD_PATH },
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout also kills what it started.
      detached: true,
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    const chunks: Buffer[] = [];
    let kept = 0;
    const collect = (b: Buffer) => {
      if (kept >= OUTPUT_LOGGED) return;
      const part = b.subarray(0, OUTPUT_LOGGED - kept);
      chunks.push(part);
      kept += part.length;
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    let timedOut = false;
    let settled = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // A background child may still hold the pipes open: stop listening instead of waiting for it.
      child.stdout!.destroy();
      child.stderr!.destroy();
      resolve({ code, signal, timedOut, output: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

/** The script-side result map (SPEC §7.12). Absent parts are `()`. */
export function resultMap(code: number | null, signal: NodeJS.Signals | null): Map<string, Value> {
  const signo = signal ? osConstants.signals[signal] : undefined;
  return new Map<string, Value>([
    ['has_code', code !== null],
    ['code', code !== null ? BigInt(code) : undefined],
    ['has_signal', signal !== null],
    ['signal', signo !== undefined ? BigInt(signo) : undefined],
  ]);
}

export class CmdService {
  readonly kind = 'cmd';
  constructor(
    readonly id: string,
    readonly opts: CmdOptions,
  ) {}

  /** `run()` with the declared arguments, or `run(args)` with these instead. */
  async run(call: HostCall, fn: string, args?: string[]): Promise<Value> {
    const argv = args ?? this.opts.args;
    const shown = [this.opts.command, ...argv].join(' ');
    if (call.dryRun) {
      call.log.info({ command: this.opts.command, args: argv }, `${fn}: would run ${shown}`);
      return resultMap(0, null);
    }
    let r: CmdResult;
    try {
      r = await runProgram(this.opts, argv);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw fnError(fn, `cannot run ${this.opts.command}: ${e.code ?? e.message}`);
    }
    const fields = { command: this.opts.command, args: argv, code: r.code, signal: r.signal };
    if (r.timedOut) call.log.warn(fields, `${fn}: ${shown} killed after ${this.opts.timeoutMs} ms`);
    call.log.debug({ ...fields, output: r.output }, `${fn}: ${shown} finished`);
    return resultMap(r.code, r.signal);
  }
}
