// The host side of every built-in call a script makes: finds the HostBuiltin
// by name, checks arity and stage (E_TOO_EARLY), builds the HostCall for the
// evaluation it belongs to, and runs it. Also implements the engine's own
// `sys::` primitives (logging, data files, IDNA, reverse DNS).

import fs from 'node:fs';
import path from 'node:path';
import { domainToASCII } from 'node:url';
import type { Logger } from 'pino';
import type { CompiledPolicy } from '../vsl/compiler.js';
import type { HostBuiltin, HostCall, Effects } from '../builtins/host.js';
import type { HostEnv } from '../host/ports.js';
import { type MessageView, STAGES, stageIndex, type Header, type Session, type Stage, type StageEffect, type Transaction } from '../mail/types.js';
import { arityOk, arityText } from '../vsl/catalog.js';
import { VslError, fnError, type Value } from '../vsl/values/value.js';
import { fcrdns } from '../builtins/dns/resolver.js';
import { confinedReadPath, readableRoots } from '../builtins/core/fs.js';

/** Everything one stage evaluation needs on the host side. */
export interface EvalState {
  stage: Stage;
  session: Session;
  txn: Transaction | null;
  message: MessageView | null;
  effects: RecordingEffects;
  cache: Map<string, unknown>;
  credentials?: { mechanism: string; authid: string; authpass: string };
  log: Logger;
  dryRun: boolean;
  /** Directive names by index, for HostCall.rule. */
  rules: Array<{ name: string; at: string }>;
}

/** State used for calls made while the policy loads (file(), services). */
export interface LoadState {
  load: true;
  /** Data files read at load, for the reload watcher. */
  dataFiles: Set<string>;
  /** Set while on_config runs: built-ins see the pseudo-stage 'config' (env() is unrestricted there, SPEC §7.2). */
  inOnConfig?: boolean;
}

export class RecordingEffects implements Effects {
  readonly recorded: StageEffect[] = [];
  addHeader(h: Header, where: 'top' | 'bottom'): void {
    this.recorded.push({ kind: 'header', op: where === 'top' ? 'prepend' : 'append', name: h.name, value: h.value });
  }
  record(e: StageEffect): void {
    this.recorded.push(e);
  }
  list(): readonly StageEffect[] {
    return this.recorded;
  }
}

export class HostBridge {
  readonly builtins = new Map<string, HostBuiltin>();
  /** Data files read through file() at runtime (watched by reload). */
  readonly runtimeDataFiles = new Set<string>();

  constructor(
    builtins: HostBuiltin[],
    private readonly compiled: CompiledPolicy,
    private env: HostEnv,
  ) {
    for (const b of builtins) this.builtins.set(b.name, b);
  }

  setEnv(env: HostEnv): void {
    this.env = env;
  }

  private fileDirOf(posId: number): string {
    const pos = posId >= 0 ? this.compiled.positions[posId] : undefined;
    if (pos) {
      const mod = this.compiled.modules.find((m) => m.display === pos.file);
      if (mod) return path.dirname(mod.path);
    }
    return this.env.policyDir;
  }

  private at(posId: number): string {
    const pos = posId >= 0 ? this.compiled.positions[posId] : undefined;
    return pos ? `${pos.file}:${pos.line}:${pos.col}` : '';
  }

  callSync(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): Value {
    const sys = this.sys(state, ruleIndex, name, args, posId);
    if (sys !== NOT_SYS) {
      if (sys instanceof Promise) throw fnError(name, 'is an I/O function');
      return sys as Value;
    }
    const { b, call } = this.prepare(state, ruleIndex, name, args, posId);
    const r = b.fn(call, args);
    if (r instanceof Promise) {
      r.catch(() => undefined);
      throw fnError(name, 'returned a promise from a synchronous call');
    }
    return r;
  }

  async callAsync(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): Promise<Value> {
    const sys = this.sys(state, ruleIndex, name, args, posId);
    if (sys !== NOT_SYS) return await (sys as Value | Promise<Value>);
    const { b, call } = this.prepare(state, ruleIndex, name, args, posId);
    return await b.fn(call, args);
  }

  private prepare(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): { b: HostBuiltin; call: HostCall } {
    const b = this.builtins.get(name);
    if (!b) throw new VslError(`${name}: no such built-in`);
    if (!arityOk(b.arity, args.length)) throw fnError(name, `takes ${arityText(b.arity)} argument(s), got ${args.length}`);
    const call = this.hostCall(state, ruleIndex, name, b, posId);
    return { b, call };
  }

  private hostCall(state: unknown, ruleIndex: number, name: string, b: HostBuiltin | null, posId: number): HostCall {
    if (isLoadState(state) || state === null) {
      if (b && b.io) throw fnError(name, 'I/O built-ins cannot run at load');
      // Load-time calls (services, csv, file): a session-less call.
      return {
        stage: isLoadState(state) && state.inOnConfig ? ('config' as Stage) : 'connect', rule: '', at: this.at(posId), fileDir: this.fileDirOf(posId),
        session: LOAD_SESSION, txn: null, message: null, env: this.env, log: this.env.log,
        effects: new RecordingEffects(), cache: new Map(), dryRun: false,
      };
    }
    const s = state as EvalState;
    if (b && stageIndex(s.stage) < stageIndex(b.from)) {
      throw new VslError(`E_TOO_EARLY: ${name}() is available from stage ${b.from} (called in ${s.stage})`);
    }
    const rule = s.rules[ruleIndex];
    return {
      stage: s.stage,
      rule: rule?.name ?? '',
      at: this.at(posId),
      fileDir: this.fileDirOf(posId),
      session: s.session,
      txn: s.txn,
      message: s.message,
      env: this.env,
      log: s.log.child({ rule: rule?.name, stage: s.stage }),
      effects: s.effects,
      cache: s.cache,
      dryRun: s.dryRun,
      credentials: s.stage === 'authenticate' ? s.credentials : undefined,
    };
  }

  /** The engine's own primitives; NOT_SYS when `name` is an ordinary built-in. */
  private sys(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): Value | Promise<Value> | typeof NOT_SYS {
    switch (name) {
      case 'sys::print': {
        const [kind, text] = args;
        const s = isLoadState(state) || state === null ? null : (state as EvalState);
        const log = s ? s.log : this.env.log;
        const rule = s ? s.rules[ruleIndex]?.name : undefined;
        const fields = { rule, stage: s?.stage, at: this.at(posId) };
        if (kind === 'debug') log.debug(fields, String(text));
        else log.info(fields, String(text));
        return undefined;
      }
      case 'sys::read_lines': {
        const [p] = args;
        if (typeof p !== 'string') throw fnError('file', 'expects a path string');
        // Confined to the policy's directory and vsl.data_dir (src/builtins/core/fs.ts).
        const full = confinedReadPath('file', path.resolve(this.fileDirOf(posId), p), readableRoots(this.env.policyDir, this.env.config.vsl.data_dir));
        let text: string;
        try {
          text = fs.readFileSync(full, 'utf8');
        } catch (e) {
          throw fnError('file', `cannot read '${p}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
        }
        if (isLoadState(state)) state.dataFiles.add(full);
        else this.runtimeDataFiles.add(full);
        return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
      }
      case 'sys::idna': {
        const [d] = args;
        if (typeof d !== 'string') throw new VslError('invalid domain');
        const a = domainToASCII(d);
        if (!a) throw new VslError(`invalid domain '${d}'`);
        return a.toLowerCase();
      }
      case 'sys::fcrdns': {
        const s = state as EvalState;
        if (!s || isLoadState(s)) throw new VslError('reverse DNS is not available at load');
        if (s.session.reverseName !== undefined) return s.session.reverseName ?? undefined;
        return fcrdns(this.env.resolver, s.session.clientIp).then((n) => {
          s.session.reverseName = n;
          return n ?? undefined;
        }, () => undefined);
      }
      default:
        return NOT_SYS;
    }
  }
}

const NOT_SYS = Symbol('not-sys');

function isLoadState(s: unknown): s is LoadState {
  return typeof s === 'object' && s !== null && (s as LoadState).load === true;
}

const LOAD_SESSION: Session = {
  id: 'load', listener: 'smtp', clientIp: '127.0.0.1', clientPort: 0, serverIp: '127.0.0.1', serverPort: 0,
  serverName: 'localhost', connectedAt: new Date(0), tls: null, helo: null, esmtp: false, auth: null,
  pipeliningViolation: false, remembered: null, pendingHeaders: [],
};

export { STAGES };
