// The vSL face of the legacy formats (SPEC §8.2–§8.4, Appendix A):
// smtpd_check_rules, mapping::check and every postfix:: restriction.
// Arguments are checked here, the decision is made by the pure modules of
// this folder, and the result becomes a status. Any failure (unreadable or
// invalid data file, temporary DNS failure, bad argument) is a runtime error
// named after the function, so the stage fails closed (SPEC §5.7).

import { parseDuration } from '../../config/units.js';
import { stageIndex, type Stage } from '../../mail/types.js';
import { type Status, makeStatus } from '../../vsl/values/status.js';
import { VObject, VslError, fnError, isArray, isMap, type Value } from '../../vsl/values/value.js';
import { argText, checkArity, dnsFailure, dnsTimeoutMs, dnsblTimeoutMs, statusFor } from '../dns/call-args.js';
import { DnsError } from '../../host/ports.js';
import { type HostBuiltin, type HostCall } from '../host.js';
import { dataFileCacheFor, resolveDataPath, resolveMapSpec, type DataFileKind } from './data-files.js';
import type { LegacyDecision } from './decision.js';
import { resolverLookups, type LegacyLookups } from './lookups.js';
import { ACCESS_TABLES, evaluateMapping, probeFor, type AccessTableName } from './mapping-table.js';
import { RESTRICTIONS, RESTRICTION_NAMES, RestrictionError, runRestriction, syncRestriction, type PostfixContext, type RestrictionName } from './postfix.js';
import { probeFromCall } from './probe.js';
import { DEFAULT_DELAY_MS, evaluateSmtpdCheckRules, smtpdInputFromProbe } from './smtpd-check-rules.js';

/** call.cache key of the forward-confirmed client name, shared by the calls of a transaction. */
const CLIENT_NAME_KEY = 'legacy:client-name';

/** Turns anything a legacy check throws into a runtime error of `fn`. */
function asRuntimeError(fn: string, err: unknown): VslError {
  if (err instanceof VslError) return err;
  if (err instanceof RestrictionError && err.message.startsWith('E_TOO_EARLY')) return new VslError(err.message);
  if (err instanceof DnsError) return fnError(fn, `DNS: ${dnsFailure(err)}`);
  return fnError(fn, err instanceof Error ? err.message : String(err));
}

function guarded(fn: string, body: (call: HostCall, args: Value[]) => Promise<Value>): HostBuiltin['fn'] {
  return async (call, args) => {
    try {
      return await body(call, args);
    } catch (err) {
      throw asRuntimeError(fn, err);
    }
  };
}

function lookupsFor(call: HostCall, fn: string): LegacyLookups {
  const known = call.session.reverseName !== undefined ? call.session.reverseName : (call.cache.get(CLIENT_NAME_KEY) as string | null | undefined);
  const base = resolverLookups(call.env.resolver, {
    clientIp: call.session.clientIp,
    ...(known !== undefined ? { knownName: known } : {}),
    log: call.log,
    timeoutMs: dnsTimeoutMs(call, fn),
    dnsblTimeoutMs: dnsblTimeoutMs(call, fn),
    now: () => call.env.clock.now(),
  });
  return {
    ...base,
    clientName: async () => {
      const name = await base.clientName();
      call.cache.set(CLIENT_NAME_KEY, name);
      return name;
    },
  };
}

function tooEarly(what: string, from: Stage, stage: Stage): never {
  throw new VslError(`E_TOO_EARLY: ${what} is available from stage ${from} (called in ${stage})`);
}

/** Logs what decided and makes the status. */
/**
 * The relay controls of SPEC §5.6 among these built-ins. Each clears the
 * recipient at rcpt when it lets it through: a data-file format only when a
 * line matched (a file without a catch-all line leaves a foreign recipient
 * to the relay guard), reject_unauth_destination when it passed.
 */
const RELAY_CONTROLS = new Set(['smtpd_check_rules', 'mapping::check', 'postfix::permit_mynetworks', 'postfix::permit_sasl_authenticated', 'postfix::reject_unauth_destination']);

function clearsRelay(fn: string, d: LegacyDecision): boolean {
  if (!RELAY_CONTROLS.has(fn)) return false;
  if (d.kind === 'accept') return true;
  return d.kind === 'next' && (d.matched !== undefined || fn === 'postfix::reject_unauth_destination');
}

function toStatus(call: HostCall, fn: string, d: LegacyDecision): Status {
  const where = d.matched ? `${d.matched.file}:${d.matched.line}` : undefined;
  if (d.kind !== 'next' || where) {
    call.log.info({ fn, decision: d.kind, reply: d.reply, at: where, delayMs: d.delayMs }, `${fn}: ${d.kind}${d.reply ? ` ${d.reply}` : ''}`);
  }
  if (call.stage === 'rcpt' && clearsRelay(fn, d)) call.effects.record({ kind: 'relay_cleared' });
  switch (d.kind) {
    case 'next':
      return makeStatus('next');
    case 'accept':
      return makeStatus('accept');
    case 'reject':
    case 'deny':
      return statusFor(fn, d.kind, d.reply);
    case 'quarantine':
      return makeStatus('quarantine', d.quarantine ?? 'hold');
  }
}

// ------------------------------------------------------------------ smtpd_check_rules

function delayOption(fn: string, key: string, v: Value): number {
  const text = typeof v === 'string' ? v : v instanceof VObject ? v.text() : null;
  if (text === null) throw fnError(fn, `option ${key} must be a duration string like "10s"`);
  try {
    return parseDuration(text);
  } catch {
    throw fnError(fn, `option ${key}: invalid duration '${text}'`);
  }
}

const smtpdCheckRules: HostBuiltin = {
  name: 'smtpd_check_rules',
  from: 'rcpt',
  io: true,
  arity: [1, 2],
  fn: guarded('smtpd_check_rules', async (call, args) => {
    const fn = 'smtpd_check_rules';
    checkArity(fn, args, 1, 2);
    const file = resolveDataPath(call.fileDir, argText(fn, 'path', args[0]!));
    let notoDelayMs = DEFAULT_DELAY_MS;
    let denyDelayMs = DEFAULT_DELAY_MS;
    const opts = args[1];
    if (opts !== undefined) {
      if (!isMap(opts)) throw fnError(fn, 'options must be a map like #{ noto_delay: "10s" }');
      for (const [k, v] of opts) {
        if (k === 'noto_delay') notoDelayMs = delayOption(fn, k, v);
        else if (k === 'deny_delay') denyDelayMs = delayOption(fn, k, v);
        else throw fnError(fn, `unknown option '${k}' (expected noto_delay, deny_delay)`);
      }
    }
    const probe = probeFromCall(call);
    if (!probe.recipient) throw fnError(fn, 'no recipient under evaluation');
    const table = await dataFileCacheFor(call.env).load('smtpd_check_rules', file);
    const decision = await evaluateSmtpdCheckRules(table, smtpdInputFromProbe(probe), {
      lookups: lookupsFor(call, fn),
      clock: call.env.clock,
      log: call.log,
      notoDelayMs,
      denyDelayMs,
    });
    // No line matched: `next` without clearing the recipient, so the
    // following rules and then the relay guard decide (SPEC §8.3, §5.6).
    return toStatus(call, fn, decision);
  }),
};

// ------------------------------------------------------------------ mapping::check

const mappingCheck: HostBuiltin = {
  name: 'mapping::check',
  // PORT_ACCESS works from connect; the other tables need a recipient (checked per call).
  from: 'connect',
  io: true,
  arity: 2,
  fn: guarded('mapping::check', async (call, args) => {
    const fn = 'mapping::check';
    checkArity(fn, args, 2, 2);
    const file = resolveDataPath(call.fileDir, argText(fn, 'path', args[0]!));
    const tableName = argText(fn, 'table', args[1]!).toUpperCase();
    if (!(ACCESS_TABLES as readonly string[]).includes(tableName)) {
      throw fnError(fn, `unknown table '${argText(fn, 'table', args[1]!)}' (expected ${ACCESS_TABLES.join(', ')})`);
    }
    const table = tableName as AccessTableName;
    if (table !== 'PORT_ACCESS' && stageIndex(call.stage) < stageIndex('rcpt')) {
      tooEarly(`mapping::check(${table})`, 'rcpt', call.stage);
    }
    const probe = probeFromCall(call);
    if (table !== 'PORT_ACCESS' && !probe.recipient) throw fnError(fn, 'no recipient under evaluation');
    const mapping = await dataFileCacheFor(call.env).load('mapping', file);
    const decision = await evaluateMapping(mapping, table, probeFor(table, probe), { clock: call.env.clock, log: call.log });
    return toStatus(call, fn, decision);
  }),
};

// ------------------------------------------------------------------ postfix::

/** permit_mynetworks' optional argument: a network, or a (nested) array of them, as strings or rg/ip objects. */
function networkList(fn: string, v: Value): string[] {
  if (typeof v === 'string') return [v];
  if (v instanceof VObject) return [v.text()];
  if (isArray(v)) return v.flatMap((x) => networkList(fn, x));
  throw fnError(fn, 'networks must be a string, an rg4/rg6/ip object or an array of them');
}

function postfixContext(call: HostCall, fn: string): PostfixContext {
  return {
    probe: probeFromCall(call),
    stage: call.stage,
    lookups: lookupsFor(call, fn),
    loadMap: async (spec) => {
      const { type, path } = resolveMapSpec(call.fileDir, spec);
      return dataFileCacheFor(call.env).load('access', path, type);
    },
    log: call.log,
    addHeader: (h) => call.effects.addHeader(h, 'top'),
  };
}

function postfixBuiltin(name: RestrictionName): HostBuiltin {
  const spec = RESTRICTIONS[name];
  const fn = `postfix::${name}`;
  const textArgs = (args: Value[]): string[] | undefined => {
    checkArity(fn, args, spec.arity[0], spec.arity[1]);
    if (args.length === 0 || args[0] === undefined) return undefined;
    if (name === 'permit_mynetworks') return networkList(fn, args[0]);
    return [argText(fn, name === 'reject_rbl_client' ? 'zone' : 'map', args[0])];
  };
  if (!spec.io) {
    // No DNS, no file: answered synchronously, as non-I/O built-ins must be.
    return {
      name: fn,
      from: spec.from,
      io: false,
      arity: spec.arity,
      fn: (call, args) => {
        try {
          const d = syncRestriction(probeFromCall(call), name, textArgs(args));
          if (!d) throw new RestrictionError('not a synchronous restriction');
          return toStatus(call, fn, d);
        } catch (err) {
          throw asRuntimeError(fn, err);
        }
      },
    };
  }
  return {
    name: fn,
    from: spec.from,
    io: true,
    arity: spec.arity,
    fn: guarded(fn, async (call, args) => {
      const d = await runRestriction(postfixContext(call, fn), name, textArgs(args));
      return toStatus(call, fn, d);
    }),
  };
}

export const legacyBuiltins: HostBuiltin[] = [
  smtpdCheckRules,
  mappingCheck,
  ...RESTRICTION_NAMES.map(postfixBuiltin),
];

/**
 * Which argument of which built-in names a data file, and its format: for
 * `mta check` and the loader, which read and validate files named by string
 * literals at load (SPEC §7.1) with validateDataFileAt.
 */
export const LEGACY_DATA_FILE_ARGS: Readonly<Record<string, { index: number; kind: DataFileKind }>> = {
  smtpd_check_rules: { index: 0, kind: 'smtpd_check_rules' },
  'mapping::check': { index: 0, kind: 'mapping' },
  'postfix::check_client_access': { index: 0, kind: 'access' },
  'postfix::check_helo_access': { index: 0, kind: 'access' },
  'postfix::check_sender_access': { index: 0, kind: 'access' },
  'postfix::check_recipient_access': { index: 0, kind: 'access' },
};

export { validateDataFile, validateDataFileAt } from './data-files.js';
