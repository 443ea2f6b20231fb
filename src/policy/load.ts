// Loads a policy: sources → compile → sandbox → on_config → module code →
// stage map, collecting every problem as a diagnostic with file:line:col.
// The result is an immutable PolicyVersion (ARCHITECTURE.md): compiled code,
// stage table, configuration and its own sandbox. `mta check`, `mta test`,
// `mta explain`, the server and hot reload all load through here.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import type * as A from '../vsl/ast.js';
import { loadSources, type SourceFile } from '../vsl/loader.js';
import { compilePolicy, type CompiledPolicy } from '../vsl/compiler.js';
import type { Diagnostic } from '../vsl/diagnostics.js';
import { STDLIB_NAMESPACES, type HostBuiltinRef } from '../vsl/catalog.js';
import { PolicySandbox, GuestFailure, type StageRun, type GuestError } from '../sandbox/sandbox.js';
import { defaultConfig, type Config } from '../config/schema.js';
import { applySet, configErrors, configFromValue, ConfigError, finishConfig } from '../config/validate.js';
import { assignmentPosition } from '../config/assignment.js';
import { parseDuration, parseSize } from '../config/units.js';
import { decodeValue, encodeValue } from '../vsl/values/wire.js';
import type { Value } from '../vsl/values/value.js';
import type { ContextData } from '../vsl/values/context-wire.js';
import type { HostBuiltin } from '../builtins/host.js';
import { dataFileValidator } from '../builtins/registry.js';
import { type HostEnv, systemClock } from '../host/ports.js';
import { HostBridge, type LoadState } from './host-bridge.js';
import { STAGES, type Stage } from '../mail/types.js';
import { outsideReadableRoots, readableRoots } from '../builtins/core/fs.js';
import { formatCidr, parseCidr } from '../vsl/values/net.js';
import { stageWarnings } from '../vsl/check.js';
import { installNodePlatform } from '../vsl/host-platform.js';
import { newHostLocals } from '../host/ports.js';

installNodePlatform();

export interface ConfigOverrides {
  set?: string[];
  listen?: string[];
  queueDir?: string;
  logLevel?: string;
  logFormat?: string;
}

export interface LoadOptions {
  overrides?: ConfigOverrides;
  /** Host built-ins available to the policy (src/builtins/registry.ts). */
  builtins: HostBuiltin[];
  /** Builds the long-lived host services once the configuration is known. */
  env?: (config: Config) => HostEnv;
  hostname?: string;
  /** Refuse TLS certificate or key files that cannot be read (mta check, mta run); transcripts use a test certificate instead. */
  checkTlsFiles?: boolean;
}

export interface RuleInfo {
  name: string;
  kind: 'rule' | 'action';
  /** `file:line:col` of the directive's name. */
  at: string;
  pos: A.Pos;
}

export interface PolicyVersion {
  /** Short hash of every source and data file. */
  id: string;
  mainPath: string;
  config: Config;
  compiled: CompiledPolicy;
  stages: Record<Stage, RuleInfo[]>;
  /** Policy files and data files (watched by hot reload). */
  files: string[];
  warnings: Diagnostic[];
  bridge: HostBridge;
  evaluate(stage: string, context: ContextData, state: unknown): Promise<StageRun>;
  /** A value exported by main.vsl (used by tests and tooling). */
  exported(name: string): Value;
  dispose(): void;
}

export type LoadResult =
  | { ok: true; version: PolicyVersion; diagnostics: Diagnostic[]; sources: Map<string, string> }
  | { ok: false; diagnostics: Diagnostic[]; sources: Map<string, string> };

let stdlibCache: Array<{ file: SourceFile; namespace: string }> | null = null;

function stdlibDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'stdlib', 'prelude.vsl'))) return path.join(dir, 'stdlib');
    dir = path.dirname(dir);
  }
  throw new Error('stdlib/ not found next to the installation');
}

function loadStdlib(): Array<{ file: SourceFile; namespace: string }> {
  if (stdlibCache) return stdlibCache;
  const dir = stdlibDir();
  const out: Array<{ file: SourceFile; namespace: string }> = [];
  for (const [name, ns] of [...STDLIB_NAMESPACES.map((n) => [n, n] as const), ['prelude', ''] as const]) {
    const loaded = loadSources(path.join(dir, `${name}.vsl`));
    if (loaded.diagnostics.some((d) => d.severity === 'error')) {
      throw new Error(`stdlib/${name}.vsl: ${loaded.diagnostics.map((d) => d.message).join('; ')}`);
    }
    out.push({ file: loaded.root, namespace: ns });
  }
  stdlibCache = out;
  return out;
}

export function hostCatalog(builtins: HostBuiltin[]): Map<string, HostBuiltinRef> {
  const m = new Map<string, HostBuiltinRef>();
  for (const b of builtins) m.set(b.name, { kind: 'host', name: b.name, io: b.io, arity: b.arity, from: b.from });
  return m;
}

function posText(p: A.Pos): string {
  return `${p.file}:${p.line}:${p.col}`;
}

function diag(pos: A.Pos, message: string, hint?: string, severity: 'error' | 'warning' = 'error'): Diagnostic {
  return { severity, pos, message, hint };
}

function guestDiag(e: GuestError, fallback: A.Pos, prefix = ''): Diagnostic {
  return diag(e.at ?? fallback, `${prefix}${e.message}`, e.fatal === 'timeout' ? 'top-level code and on_config must finish quickly' : undefined);
}

export function defaultLogger(): Logger {
  return pino({ level: 'silent' });
}

export function defaultEnvFor(config: Config, log: Logger, policyDir = process.cwd()): HostEnv {
  // A resolver that fails every lookup: loading never needs DNS.
  const fail = async (): Promise<never> => {
    const { DnsError } = await import('../host/ports.js');
    throw new DnsError('REFUSED', 'load', 'DNS is not available here');
  };
  return {
    config,
    resolver: { a: fail, aaaa: fail, mx: fail, txt: fail, ptr: fail, ns: fail },
    state: {
      incrWindow: async () => 1, get: async () => null, set: async () => undefined, del: async () => undefined, close: async () => undefined,
    },
    clock: systemClock,
    log,
    policyDir,
    locals: newHostLocals(),
  };
}

/** Loads and validates a policy. Never throws for bad policy input. */
export async function loadPolicy(mainPath: string, opts: LoadOptions): Promise<LoadResult> {
  const sources = new Map<string, string>();
  const diagnostics: Diagnostic[] = [];
  const hostname = opts.hostname ?? os.hostname();
  const abs = path.resolve(mainPath);

  const loaded = loadSources(abs);
  for (const f of loaded.files) sources.set(f.display, f.text);
  diagnostics.push(...loaded.diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, diagnostics, sources };

  const compiled = compilePolicy({ sources: loaded, stdlib: loadStdlib(), host: hostCatalog(opts.builtins) });
  diagnostics.push(...compiled.diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, diagnostics, sources };

  const rootPos: A.Pos = { file: loaded.root.display, line: 1, col: 1 };
  const order = compiled.modules.map((m) => m.index);

  // The configuration first: on_config may set vsl.memory_limit and rule_timeout.
  let config = finishConfig(defaultConfig(hostname, false));
  const bootLimits = { memoryBytes: parseSize(config.vsl.memory_limit), ruleTimeoutMs: parseDuration(config.vsl.rule_timeout) };
  const bootLog = defaultLogger();
  const bridge = new HostBridge(opts.builtins, compiled, defaultEnvFor(config, bootLog, path.dirname(abs)));
  let sandbox: PolicySandbox;
  try {
    sandbox = await PolicySandbox.create(compiled, bootLimits, bridge);
  } catch (e) {
    diagnostics.push(diag(rootPos, `internal error while preparing the sandbox: ${(e as Error).message}`));
    return { ok: false, diagnostics, sources };
  }
  const loadState: LoadState = { load: true, dataFiles: new Set() };
  sandbox.loadState = loadState;

  try {
    if (compiled.onConfig) {
      const defaults = decodeValue(encodeValue(configToValue(config)));
      loadState.inOnConfig = true;
      const r = sandbox.runOnConfig(compiled.onConfig.module, 'on_config/1', defaults);
      loadState.inOnConfig = false;
      if (!r.ok) {
        diagnostics.push(guestDiag(r.error, compiled.onConfig.pos, 'on_config failed: '));
      } else {
        try {
          config = configFromValue(r.value, hostname);
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          // Every bad key, each at the line that sets it (src/config/assignment.ts).
          const at = compiled.onConfig.pos;
          const text = sources.get(at.file) ?? '';
          const found = configErrors(r.value, hostname);
          // Never fewer than the error that failed the load: a silent pass would load the defaults.
          for (const ce of found.length > 0 ? found : [e]) {
            const p = assignmentPosition(text, ce.path);
            diagnostics.push(diag(p ? { ...at, line: p.line, col: p.col } : at, ce.message));
          }
        }
      }
    }
    diagnostics.push(...overrideDiagnostics(config, opts.overrides ?? {}));
    if (opts.checkTlsFiles && !diagnostics.some((d) => d.severity === 'error')) diagnostics.push(...tlsFileDiagnostics(config, compiled.onConfig?.pos ?? rootPos, sources));
    if (diagnostics.some((d) => d.severity === 'error')) {
      sandbox.dispose();
      return { ok: false, diagnostics, sources };
    }
    // Top-level code runs with the final configuration (e.g. vsl.allow_cmd for a `const x = cmd::build(…)`).
    const env = opts.env ? opts.env(config) : defaultEnvFor(config, bootLog, path.dirname(abs));
    bridge.setEnv(env);
    sandbox.setServer(serverInfo(config, hostname));
    const init = sandbox.init(order, compiled.mainIndex);
    if (!init.ok) {
      const e = init.error;
      const keyPos = (k: string) => compiled.stageKeyPos[k] ?? compiled.stageMapPos ?? rootPos;
      switch (e.kind) {
        case 'runtime': diagnostics.push(guestDiag(e.error, rootPos)); break;
        case 'not_map': diagnostics.push(diag(compiled.stageMapPos ?? rootPos, `main.vsl must end in a map of stages, got ${e.type}`, 'end the file with #{ rcpt: [ rule "…" || … ] }')); break;
        case 'unknown_stage': diagnostics.push(diag(keyPos(e.key), `unknown stage '${e.key}'`, `stages are ${STAGES.join(', ')}`)); break;
        case 'not_array': diagnostics.push(diag(keyPos(e.key), `stage '${e.key}' must be an array of rules, got ${e.type}`, `write ${e.key}: [ rule "…" || … ]`)); break;
        case 'bad_element': diagnostics.push(diag(keyPos(e.key), `stage '${e.key}' contains a ${e.type}, expected rules or actions`)); break;
        case 'duplicate': {
          const first = compiled.positions[e.firstPosId]!;
          diagnostics.push(diag(compiled.positions[e.posId] ?? rootPos, `duplicate rule name '${e.name}' (first at ${posText(first)})`, 'rule names must be unique in the whole stage map'));
          break;
        }
      }
      sandbox.dispose();
      return { ok: false, diagnostics, sources };
    }
    const stages = Object.fromEntries(STAGES.map((s) => [s, (init.stages[s] ?? []).map((r) => {
      const pos = compiled.positions[r.posId] ?? rootPos;
      return { name: r.name, kind: r.kind as 'rule' | 'action', at: posText(pos), pos };
    })])) as Record<Stage, RuleInfo[]>;

    diagnostics.push(...stageWarnings(compiled, {
      rcptDirectives: stages.rcpt.length,
      authenticateDirectives: stages.authenticate.length,
      authOffered: authOffered(config),
    }, rootPos));
    const dataDiags = validateDataFiles(compiled, opts.builtins, readableRoots(path.dirname(abs), config.vsl.data_dir));
    diagnostics.push(...dataDiags);
    if (diagnostics.some((d) => d.severity === 'error')) {
      sandbox.dispose();
      return { ok: false, diagnostics, sources };
    }

    // Limits from the final configuration: rebuild the sandbox when they differ from the boot ones.
    const limits = { memoryBytes: parseSize(config.vsl.memory_limit), ruleTimeoutMs: parseDuration(config.vsl.rule_timeout) };
    const files = [...new Set([...loaded.files.map((f) => f.path), ...loadState.dataFiles, ...compiled.literalDataFiles.map((d) => d.path)])];
    const id = versionId(loaded.files.map((f) => f.text), files);

    const build = async (): Promise<PolicySandbox> => {
      const sb = await PolicySandbox.create(compiled, limits, bridge);
      sb.loadState = { load: true, dataFiles: new Set() } satisfies LoadState;
      sb.setServer(serverInfo(config, hostname));
      const again = sb.init(order, compiled.mainIndex);
      if (!again.ok) throw new Error('policy no longer initialises');
      return sb;
    };
    let current: PolicySandbox = sandbox;
    if (limits.memoryBytes !== bootLimits.memoryBytes || limits.ruleTimeoutMs !== bootLimits.ruleTimeoutMs) {
      sandbox.dispose();
      current = await build();
    }
    let rebuilding: Promise<PolicySandbox> | null = null;
    const version: PolicyVersion = {
      id, mainPath: abs, config, compiled, stages, files,
      warnings: diagnostics.filter((d) => d.severity === 'warning'),
      bridge,
      async evaluate(stage, context, state) {
        if (current.broken) {
          // After a WebAssembly fault the runtime is rebuilt from the compiled policy (SPEC §13).
          rebuilding ??= build().finally(() => { rebuilding = null; });
          const old = current;
          current = await rebuilding;
          if (old !== current) old.dispose();
        }
        return current.evaluate(stage, context, state);
      },
      exported(name) {
        return current.exported(compiled.mainIndex, name);
      },
      dispose() {
        current.dispose();
      },
    };
    return { ok: true, version, diagnostics, sources };
  } catch (e) {
    sandbox.dispose();
    if (e instanceof GuestFailure) {
      diagnostics.push(guestDiag(e.error, rootPos));
      return { ok: false, diagnostics, sources };
    }
    diagnostics.push(diag(rootPos, `internal error while loading: ${(e as Error).message}`));
    return { ok: false, diagnostics, sources };
  }
}

function versionId(texts: string[], files: string[]): string {
  const h = crypto.createHash('sha256');
  for (const t of texts) h.update(t).update('\u0000');
  for (const f of files) {
    try {
      h.update(fs.readFileSync(f));
    } catch {
      h.update('missing');
    }
  }
  return h.digest('hex').slice(0, 12);
}

/** The configuration as a plain value tree for on_config (ints as bigint). */
function configToValue(cfg: unknown): Value {
  const conv = (v: unknown): unknown => {
    if (typeof v === 'number') return BigInt(v);
    if (v === null) return undefined;
    if (Array.isArray(v)) return v.map(conv);
    if (typeof v === 'object') return new Map(Object.entries(v as Record<string, unknown>).map(([k, e]) => [k, conv(e)]));
    return v;
  };
  return conv(cfg) as Value;
}

/** Each bad command-line override as its own diagnostic, positioned on the command line, not in a file. */
function overrideDiagnostics(config: Config, o: ConfigOverrides): Diagnostic[] {
  const out: Diagnostic[] = [];
  const attempt = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      out.push(diag(COMMAND_LINE, `${what}: ${(e as Error).message}`));
    }
  };
  for (const s of o.set ?? []) attempt(`--set ${s}`, () => applySet(config, s));
  attempt('command line', () => applyOverrides(config, { ...o, set: [] }));
  return out;
}

/** The position of a problem given on the command line (formatted without line and column). */
const COMMAND_LINE: A.Pos = { file: 'command line', line: 0, col: 0 };

/** A TLS certificate or key that cannot be read is a load error at the line that names it (not an ENOENT at listen). */
function tlsFileDiagnostics(config: Config, onConfigPos: A.Pos, sources: Map<string, string>): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const key of ['certificate', 'private_key'] as const) {
    const file = config.server.tls[key];
    if (file === null) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (e) {
      const p = assignmentPosition(sources.get(onConfigPos.file) ?? '', `server.tls.${key}`);
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      out.push(diag(p ? { ...onConfigPos, line: p.line, col: p.col } : onConfigPos, `server.tls.${key}: cannot read ${file}: ${why}`));
    }
  }
  return out;
}

export function applyOverrides(config: Config, o: ConfigOverrides): void {
  for (const s of o.set ?? []) applySet(config, s);
  if (o.listen && o.listen.length) config.server.interfaces.addr = [...o.listen];
  if (o.queueDir) config.queue.dir = o.queueDir;
  if (o.logLevel) applySet(config, `logs.level=${o.logLevel}`);
  if (o.logFormat) applySet(config, `logs.format=${o.logFormat}`);
}

export function serverInfo(config: Config, hostname: string) {
  const { auth, tls, ...rest } = config.server;
  const cfgServer = {
    ...rest,
    tls: { require_for_auth: tls.require_for_auth, min_version: tls.min_version, handshake_timeout: tls.handshake_timeout, certificate: tls.certificate },
    auth: { mechanisms: auth.mechanisms, attempts_max: auth.attempts_max, saslauthd_service: auth.saslauthd_service },
  };
  return {
    name: config.server.name,
    domain: config.server.domain,
    virtual: config.server.virtual,
    relayNetworks: config.server.relay_networks,
    cfgServer: JSON.parse(encodeValue(configToValue(cfgServer))),
    dataDir: config.vsl.data_dir,
    hostname,
  };
}

/** AUTH is configured (a backend or a submission listener, with mechanisms): the §11.2 warning applies. */
function authOffered(config: Config): boolean {
  const s = config.server;
  const configured = s.auth.backend !== null || s.interfaces.addr_submission.length > 0 || s.interfaces.addr_submissions.length > 0;
  return configured && s.auth.mechanisms.length > 0;
}

/** Data files named by literals are validated at load (SPEC §7.1). */
function validateDataFiles(compiled: CompiledPolicy, builtins: HostBuiltin[], readable: string[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const d of compiled.literalDataFiles) {
    const outside = d.fn === 'file' ? outsideReadableRoots(d.path, readable) : null;
    if (outside !== null) {
      out.push(diag(d.pos, `file: '${d.spec}': ${outside}`));
      continue;
    }
    const validator = dataFileValidator(d.fn);
    if (!validator) {
      if (!fs.existsSync(d.path)) out.push(diag(d.pos, `${d.fn}: no such file '${d.spec}'`, 'data file paths are relative to the file that names them'));
      continue;
    }
    for (const p of validator(d.dir, d.spec)) {
      // A problem with the file as a whole (missing, unreadable) is reported where the policy names it.
      const whole = p.line <= 1 && (p.file === d.spec || /no such file|cannot read|ENOENT/i.test(p.message));
      out.push({
        severity: p.severity ?? 'error',
        pos: whole ? d.pos : { file: path.relative(process.cwd(), p.file) || p.file, line: p.line, col: p.col ?? 1 },
        message: whole ? `${d.fn}: ${p.message}` : p.message,
      });
    }
  }
  void builtins;
  return out;
}
