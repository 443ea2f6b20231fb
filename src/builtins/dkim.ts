// DKIM (SPEC §7.10; RFC 6376, RFC 8463): dkim::verify, result, has_result,
// store, get_private_keys, sign, and the v1 names verify_dkim and sign_dkim.
// All from preq.
//
// Verification is mailauth's, through our resolver. Signing is done here:
// mailauth's signer signs each listed header field once and cannot
// over-sign (`From` listed twice, the SPEC's default, so that a From: added
// later breaks the signature), and our own code knows how the server will
// write the header: the applier folds added fields at whitespace, which
// relaxed header canonicalization ignores and simple canonicalization does
// not. Simple header canonicalization is therefore refused.

import { createHash, createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { fnError, isArray, isMap, type Value, type VMap } from '../vsl/values/value.js';
import { argText, checkArity, dnsTimeoutMs, typeName } from './dns/call-args.js';
import { mailauthResolver } from './dns/mailauth-resolver.js';
import type { HostBuiltin, HostCall } from './host.js';
import type { MessageView } from '../mail/types.js';
import { asciiDomain } from './psl.js';

export type DkimStatus = 'pass' | 'fail' | 'neutral' | 'temperror' | 'permerror' | 'none';
const STATUSES: readonly DkimStatus[] = ['pass', 'fail', 'neutral', 'temperror', 'permerror', 'none'];

/** At most this many signatures are checked (SPEC §7.10); later ones are ignored. */
export const DKIM_MAX_SIGNATURES = 5;
/** Clock skew allowed on x= (SPEC §7.10: expired signatures are skipped with a 100 s tolerance). */
export const DKIM_EXPIRY_TOLERANCE_MS = 100_000;

export interface DkimSignatureResult {
  status: DkimStatus;
  /** d= */
  sdid: string;
  /** i=, or `@<d>` when absent. */
  auid: string;
  /** Why it did not pass (mailauth's comment), for logs. */
  comment?: string;
}

/** What a transaction knows about DKIM: every signature checked, and the summary scripts see. */
export interface DkimVerdict {
  summary: DkimSignatureResult;
  signatures: DkimSignatureResult[];
}

// ---------------------------------------------------------------- header fields

interface RawField {
  name: string;
  /** The whole field as on the wire, continuation lines included, without the final CRLF. */
  raw: string;
}

/** Header fields and body of a message, as binary strings (one char per octet). */
export function splitMessage(message: Buffer): { fields: RawField[]; body: string } {
  const text = message.toString('binary');
  let end = text.indexOf('\r\n\r\n');
  let bodyStart: number;
  if (end < 0) {
    end = text.endsWith('\r\n') ? text.length - 2 : text.length;
    bodyStart = text.length;
  } else {
    bodyStart = end + 4;
  }
  const fields: RawField[] = [];
  for (const line of text.slice(0, end).split('\r\n')) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && fields.length) {
      fields[fields.length - 1]!.raw += `\r\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon).trim(), raw: line });
  }
  return { fields, body: text.slice(bodyStart) };
}

/** The distinct domains of the addresses in the From: fields, lower-case A-labels, in order. */
export function fromDomains(message: MessageView): string[] {
  const out: string[] = [];
  for (const h of message.headers()) {
    if (h.name.toLowerCase() !== 'from') continue;
    for (const a of addressparser(h.value, { flatten: true })) {
      const at = a.address.lastIndexOf('@');
      if (at < 0) continue;
      const d = asciiDomain(a.address.slice(at + 1));
      if (d && !out.includes(d)) out.push(d);
    }
  }
  return out;
}

/** Tag=value list of a DKIM-Signature or key record (RFC 6376 §3.2), whitespace removed from values. */
export function parseTags(value: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim().toLowerCase();
    if (k && !tags.has(k)) tags.set(k, part.slice(eq + 1).replace(/\s+/g, ''));
  }
  return tags;
}

// ---------------------------------------------------------------- canonicalization (RFC 6376 §3.4)

type Canon = 'simple' | 'relaxed';

function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).trim().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n(?=[ \t])/g, '')
    .replace(/[ \t]+/g, ' ')
    .trim();
  return `${name}:${value}\r\n`;
}

function canonHeader(raw: string, canon: Canon): string {
  return canon === 'relaxed' ? relaxedHeader(raw) : `${raw}\r\n`;
}

export function canonBody(body: string, canon: Canon): string {
  let b = body;
  if (canon === 'relaxed') {
    b = b
      .split('\r\n')
      .map((line) => line.replace(/[ \t]+/g, ' ').replace(/ $/, ''))
      .join('\r\n');
  }
  // Empty lines at the end are ignored; a non-empty body ends with one CRLF.
  b = b.replace(/(\r\n)*$/, '');
  if (b === '') return canon === 'simple' ? '\r\n' : '';
  return `${b}\r\n`;
}

/** The header fields h= selects, bottom-up per name; a name with no instance left selects nothing (over-signing). */
function selectHeaders(fields: RawField[], names: string[]): RawField[] {
  const used = new Set<number>();
  const out: RawField[] = [];
  for (const n of names) {
    const lower = n.toLowerCase();
    for (let i = fields.length - 1; i >= 0; i--) {
      if (!used.has(i) && fields[i]!.name.toLowerCase() === lower) {
        used.add(i);
        out.push(fields[i]!);
        break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- signing

export interface SignOptions {
  sdid: string;
  selector: string;
  key: KeyObject;
  headers: string[];
  /** `header/body`; header canonicalization must be relaxed (see the top of this file). */
  canonicalization: string;
  /** Signing time, epoch ms (t=). */
  now: number;
}

/** The DKIM-Signature value (one line, no folding) for `message`. */
export function dkimSignatureValue(message: Buffer, o: SignOptions): string {
  const [hc, bc] = parseCanonicalization(o.canonicalization);
  if (hc !== 'relaxed') throw new Error('simple header canonicalization is not supported: the server folds the headers it adds');
  const keyType = o.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ed25519') throw new Error(`unsupported key type ${keyType ?? 'unknown'}`);
  const { fields, body } = splitMessage(message);
  const bh = createHash('sha256').update(Buffer.from(canonBody(body, bc), 'binary')).digest('base64');
  const tags = [
    'v=1',
    `a=${keyType}-sha256`,
    `c=${hc}/${bc}`,
    `d=${o.sdid}`,
    `s=${o.selector}`,
    `t=${Math.floor(o.now / 1000)}`,
    `h=${o.headers.join(':')}`,
    `bh=${bh}`,
    'b=',
  ];
  const unsigned = tags.join('; ');
  let data = selectHeaders(fields, o.headers)
    .map((f) => canonHeader(f.raw, hc))
    .join('');
  // The signature field itself, b= empty, without its CRLF (RFC 6376 §3.7).
  data += relaxedHeader(`DKIM-Signature: ${unsigned}`).slice(0, -2);
  const input = Buffer.from(data, 'binary');
  const signature =
    keyType === 'rsa' ? cryptoSign('sha256', input, o.key) : cryptoSign(null, createHash('sha256').update(input).digest(), o.key);
  return unsigned + signature.toString('base64');
}

function parseCanonicalization(c: string): [Canon, Canon] {
  const [h, b = 'simple', extra] = c.toLowerCase().split('/');
  const ok = (x: string | undefined): x is Canon => x === 'simple' || x === 'relaxed';
  if (extra !== undefined || !ok(h) || !ok(b)) throw new Error(`invalid canonicalization '${c}': expected e.g. "relaxed/relaxed"`);
  return [h, b];
}

/** Opaque handle of a configured key: what scripts pass around instead of the key. */
function keyHandle(sdid: string, selector: string): string {
  return `key:${sdid}:${selector}`;
}

interface ConfiguredKey {
  sdid: string;
  selector: string;
  file: string;
}

function configuredKeys(call: HostCall, sdid: string): ConfiguredKey[] {
  const keys = call.env.config.dkim.keys;
  const wanted = asciiDomain(sdid);
  const out: ConfiguredKey[] = [];
  for (const [domain, list] of Object.entries(keys)) {
    if (asciiDomain(domain) !== wanted) continue;
    for (const k of list) out.push({ sdid: wanted, selector: k.selector, file: k.private_key });
  }
  return out;
}

function keyFromHandle(call: HostCall, fn: string, handle: string): ConfiguredKey {
  const m = /^key:([^:]+):(.+)$/.exec(handle);
  const found = m ? configuredKeys(call, m[1]!).find((k) => k.selector === m[2]) : undefined;
  if (!found) throw fnError(fn, `unknown private key handle '${handle}' (see dkim::get_private_keys)`);
  return found;
}

async function loadKey(call: HostCall, fn: string, k: ConfiguredKey): Promise<KeyObject> {
  const file = path.resolve(call.env.policyDir, k.file);
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch (err) {
    throw fnError(fn, `cannot read the private key of ${k.sdid} selector ${k.selector}: ${(err as Error).message}`);
  }
  try {
    const key = createPrivateKey(pem);
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (key.asymmetricKeyType === 'rsa' && bits !== undefined && bits < 1024) {
      throw new Error(`RSA key of ${bits} bits is too short (1024 at least)`);
    }
    return key;
  } catch (err) {
    throw fnError(fn, `invalid private key for ${k.sdid} selector ${k.selector}: ${(err as Error).message}`);
  }
}

export const DEFAULT_SIGNED_HEADERS = ['From', 'To', 'Date', 'Subject', 'From'];

function headerList(fn: string, v: Value): string[] {
  let names: string[];
  if (isArray(v)) names = v.map((x) => argText(fn, 'headers_field element', x));
  else names = argText(fn, 'headers_field', v).split(/[\s:,]+/);
  names = names.map((n) => n.trim()).filter(Boolean);
  if (!names.length) throw fnError(fn, 'headers_field is empty');
  for (const n of names) {
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(n)) throw fnError(fn, `invalid header name '${n}'`);
  }
  if (!names.some((n) => n.toLowerCase() === 'from')) throw fnError(fn, 'headers_field must include From (RFC 6376 §5.4)');
  return names;
}

function requireMessage(call: HostCall, fn: string): MessageView {
  if (!call.message) throw fnError(fn, 'no message: DKIM is available from the preq stage');
  return call.message;
}

async function signMessage(
  call: HostCall,
  fn: string,
  o: { selector: string; handle?: string; sdid?: string; headers?: string[]; canonicalization?: string },
): Promise<Value> {
  const message = requireMessage(call, fn);
  let sdid = o.sdid;
  if (sdid === undefined) {
    const froms = fromDomains(message);
    if (!froms.length) throw fnError(fn, 'no From: domain to sign for; give sdid');
    sdid = froms[0]!;
  }
  sdid = asciiDomain(sdid);
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/.test(sdid)) throw fnError(fn, `invalid sdid '${sdid}'`);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(o.selector)) throw fnError(fn, `invalid selector '${o.selector}'`);
  let configured: ConfiguredKey;
  if (o.handle !== undefined) {
    configured = keyFromHandle(call, fn, o.handle);
    if (configured.selector !== o.selector) {
      throw fnError(fn, `private key '${o.handle}' is not the key of selector '${o.selector}'`);
    }
  } else {
    const k = configuredKeys(call, sdid).find((x) => x.selector === o.selector);
    if (!k) throw fnError(fn, `no key for ${sdid} selector '${o.selector}' in dkim.keys`);
    configured = k;
  }
  const key = await loadKey(call, fn, configured);
  let value: string;
  try {
    value = dkimSignatureValue(message.raw(), {
      sdid,
      selector: o.selector,
      key,
      headers: o.headers ?? DEFAULT_SIGNED_HEADERS,
      canonicalization: o.canonicalization ?? 'relaxed/relaxed',
      now: call.env.clock.now(),
    });
  } catch (err) {
    throw fnError(fn, (err as Error).message);
  }
  call.effects.addHeader({ name: 'DKIM-Signature', value }, 'top');
  call.log.info({ sdid, selector: o.selector }, `DKIM signed for ${sdid} (selector ${o.selector})`);
  return undefined;
}

// ---------------------------------------------------------------- verification

interface MailauthDkimResult {
  signingDomain?: string;
  signature?: string;
  rr?: string;
  status: { result: string; comment?: string };
}
type DkimVerifyFn = (
  input: Buffer,
  opts: { resolver: unknown; curTime: Date; minBitLength: number },
) => Promise<{ results: MailauthDkimResult[] }>;

const require = createRequire(import.meta.url);
// Loaded on first use (mailauth is large; see spf.ts).
let dkimVerifyFn: DkimVerifyFn | null = null;
const dkimVerify: DkimVerifyFn = (input, opts) => {
  dkimVerifyFn ??= (require('mailauth/lib/dkim/verify.js') as { dkimVerify: DkimVerifyFn }).dkimVerify;
  return dkimVerifyFn(input, opts);
};

/** The message with DKIM-Signature fields after the 5th removed, so they cost no lookups. */
function capSignatures(raw: Buffer): Buffer {
  const text = raw.toString('binary');
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end + 2);
  const lines = head.split('\r\n');
  let count = 0;
  let dropping = false;
  let dropped = false;
  const kept: string[] = [];
  for (const line of lines) {
    const continuation = line[0] === ' ' || line[0] === '\t';
    if (!continuation) {
      dropping = /^dkim-signature[ \t]*:/i.test(line) && ++count > DKIM_MAX_SIGNATURES;
      dropped ||= dropping;
    }
    if (!dropping) kept.push(line);
  }
  if (!dropped) return raw;
  return Buffer.from(kept.join('\r\n') + (end < 0 ? '' : text.slice(end + 2)), 'binary');
}

/** mailauth's result → ours; null when the signature is to be skipped (expired, or a test-mode key). */
function mapResult(r: MailauthDkimResult, tagsByB: Map<string, Map<string, string>>): DkimSignatureResult | null {
  const comment = r.status.comment;
  if (comment === 'expired') return null;
  if (r.rr) {
    const flags = (parseTags(r.rr).get('t') ?? '').split(':');
    if (flags.includes('y')) return null;
  }
  const tags = tagsByB.get((r.signature ?? '').replace(/\s+/g, ''));
  const sdid = (r.signingDomain ?? tags?.get('d') ?? '').toLowerCase();
  const auid = tags?.get('i') || `@${sdid}`;
  let status: DkimStatus;
  switch (r.status.result) {
    case 'pass':
    case 'fail':
    case 'temperror':
    case 'permerror':
    case 'none':
      status = r.status.result;
      break;
    case 'neutral':
      // RFC 6376 §6.1.3: a body hash mismatch is a verification failure.
      status = comment === 'body hash did not verify' ? 'fail' : 'neutral';
      break;
    default:
      // 'policy' (e.g. a key too short): not acceptable, and retrying will not help.
      status = 'permerror';
  }
  return { status, sdid, auid, ...(comment ? { comment } : {}) };
}

/** Verifies up to 5 signatures of `raw`; the first pass wins, else a temperror, else the first result. */
export async function verifyDkim(
  raw: Buffer,
  opts: { resolver: import('../host/ports.js').Resolver; timeoutMs: number; now: number },
): Promise<DkimVerdict> {
  const capped = capSignatures(raw);
  const tagsByB = new Map<string, Map<string, string>>();
  for (const f of splitMessage(capped).fields) {
    if (f.name.toLowerCase() !== 'dkim-signature') continue;
    const tags = parseTags(f.raw.slice(f.raw.indexOf(':') + 1));
    tagsByB.set(tags.get('b') ?? '', tags);
  }
  const out = await dkimVerify(capped, {
    resolver: mailauthResolver(opts.resolver, opts.timeoutMs),
    curTime: new Date(opts.now - DKIM_EXPIRY_TOLERANCE_MS),
    minBitLength: 1024,
  });
  const signatures = out.results
    .filter((r) => r.status.result !== 'none')
    .map((r) => mapResult(r, tagsByB))
    .filter((r): r is DkimSignatureResult => r !== null);
  const summary = signatures.find((s) => s.status === 'pass') ??
    signatures.find((s) => s.status === 'temperror') ??
    signatures[0] ?? { status: 'none' as const, sdid: '', auid: '' };
  return { summary, signatures };
}

const CACHE_KEY = 'dkim:verdict';
const HEADER_KEY = 'dkim:header-written';

/** The transaction's DKIM verdict: the cached or stored one, else verified now (once). */
export async function dkimForCall(call: HostCall, fn: string): Promise<DkimVerdict> {
  const cached = call.cache.get(CACHE_KEY) as Promise<DkimVerdict> | DkimVerdict | undefined;
  if (cached) return cached;
  const message = requireMessage(call, fn);
  const p = verifyDkim(message.raw(), {
    resolver: call.env.resolver,
    timeoutMs: dnsTimeoutMs(call, fn),
    now: call.env.clock.now(),
  });
  call.cache.set(CACHE_KEY, p);
  let verdict: DkimVerdict;
  try {
    verdict = await p;
  } catch (err) {
    call.cache.delete(CACHE_KEY);
    throw fnError(fn, `verification failed: ${(err as Error).message}`);
  }
  call.cache.set(CACHE_KEY, verdict);
  call.log.info(
    { dkim: verdict.summary.status, sdid: verdict.summary.sdid, signatures: verdict.signatures.map((s) => `${s.sdid}=${s.status}`) },
    `DKIM ${verdict.summary.status}${verdict.summary.sdid ? ` for ${verdict.summary.sdid}` : ''}`,
  );
  return verdict;
}

/**
 * An Authentication-Results property value (RFC 8601 pvalue): a domain as
 * is, anything else (it comes from the message: d= tags, From: domains) as
 * a quoted-string, so it cannot add clauses of its own.
 */
export function pvalue(v: string): string {
  if (/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)) return v;
  return `"${v.replace(/[\x00-\x1f\x7f]/g, '').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The `dkim=` clause of Authentication-Results. */
export function dkimAuthClause(s: DkimSignatureResult): string {
  return s.sdid ? `dkim=${s.status} header.d=${pvalue(s.sdid)}` : `dkim=${s.status}`;
}

function summaryMap(s: DkimSignatureResult): VMap {
  return new Map<string, Value>([
    ['status', s.status],
    ['sdid', s.sdid],
    ['auid', s.auid],
  ]);
}

async function verifyBuiltin(fn: string, call: HostCall, args: Value[]): Promise<Value> {
  checkArity(fn, args, 0, 0);
  const verdict = await dkimForCall(call, fn);
  if (!call.cache.get(HEADER_KEY)) {
    call.cache.set(HEADER_KEY, true);
    call.effects.addHeader(
      { name: 'Authentication-Results', value: `${call.env.config.server.name}; ${dkimAuthClause(verdict.summary)}` },
      'top',
    );
  }
  return summaryMap(verdict.summary);
}

function storedVerdict(call: HostCall): DkimVerdict | undefined {
  const v = call.cache.get(CACHE_KEY);
  return v && !(v instanceof Promise) ? (v as DkimVerdict) : undefined;
}

function storeBuiltin(call: HostCall, args: Value[]): Value {
  const fn = 'dkim::store';
  checkArity(fn, args, 1, 1);
  const m = args[0];
  if (!isMap(m)) throw fnError(fn, `expects a map #{ status, sdid, auid }, got ${typeName(m)}`);
  const status = argText(fn, 'status', m.get('status'));
  if (!(STATUSES as readonly string[]).includes(status)) throw fnError(fn, `invalid status '${status}'`);
  const sdid = m.get('sdid') === undefined ? '' : argText(fn, 'sdid', m.get('sdid')).toLowerCase();
  const auid = m.get('auid') === undefined ? (sdid ? `@${sdid}` : '') : argText(fn, 'auid', m.get('auid'));
  const summary: DkimSignatureResult = { status: status as DkimStatus, sdid, auid };
  call.cache.set(CACHE_KEY, { summary, signatures: [summary] } satisfies DkimVerdict);
  return undefined;
}

function signOptionsFromMap(fn: string, m: VMap): Parameters<typeof signMessage>[2] {
  const o: Parameters<typeof signMessage>[2] = { selector: '' };
  let selector: string | undefined;
  for (const [k, v] of m) {
    switch (k) {
      case 'selector':
        selector = argText(fn, 'selector', v);
        break;
      case 'private_key':
        o.handle = argText(fn, 'private_key', v);
        break;
      case 'sdid':
        o.sdid = argText(fn, 'sdid', v);
        break;
      case 'headers_field':
        o.headers = headerList(fn, v);
        break;
      case 'canonicalization':
        o.canonicalization = argText(fn, 'canonicalization', v);
        break;
      default:
        throw fnError(fn, `unknown option '${k}' (expected selector, private_key, sdid, headers_field, canonicalization)`);
    }
  }
  if (selector === undefined) throw fnError(fn, 'selector is required');
  o.selector = selector;
  return o;
}

export const dkimBuiltins: HostBuiltin[] = [
  { name: 'dkim::verify', from: 'preq', io: true, arity: 0, fn: (call, args) => verifyBuiltin('dkim::verify', call, args) },
  { name: 'verify_dkim', from: 'preq', io: true, arity: 0, fn: (call, args) => verifyBuiltin('verify_dkim', call, args) },
  {
    name: 'dkim::result',
    from: 'preq',
    io: false,
    arity: 0,
    fn(call, args) {
      checkArity('dkim::result', args, 0, 0);
      const v = storedVerdict(call);
      if (!v) throw fnError('dkim::result', 'no DKIM result yet: call dkim::verify() or dkim::store() first');
      return summaryMap(v.summary);
    },
  },
  {
    name: 'dkim::has_result',
    from: 'preq',
    io: false,
    arity: 0,
    fn(call, args) {
      checkArity('dkim::has_result', args, 0, 0);
      return storedVerdict(call) !== undefined;
    },
  },
  { name: 'dkim::store', from: 'preq', io: false, arity: 1, fn: storeBuiltin },
  {
    name: 'dkim::get_private_keys',
    from: 'preq',
    io: false,
    arity: 1,
    fn(call, args) {
      const fn = 'dkim::get_private_keys';
      checkArity(fn, args, 1, 1);
      const sdid = argText(fn, 'sdid', args[0]);
      return configuredKeys(call, sdid).map(
        (k) =>
          new Map<string, Value>([
            ['selector', k.selector],
            ['private_key', keyHandle(k.sdid, k.selector)],
          ]),
      );
    },
  },
  {
    name: 'dkim::sign',
    from: 'preq',
    io: true,
    arity: 1,
    async fn(call, args) {
      const fn = 'dkim::sign';
      checkArity(fn, args, 1, 1);
      const m = args[0];
      if (!isMap(m)) throw fnError(fn, `expects a map #{ selector, … }, got ${typeName(m)}`);
      return signMessage(call, fn, signOptionsFromMap(fn, m));
    },
  },
  {
    // v1: keyed for server.domain.
    name: 'sign_dkim',
    from: 'preq',
    io: true,
    arity: [1, 3],
    async fn(call, args) {
      const fn = 'sign_dkim';
      checkArity(fn, args, 1, 3);
      return signMessage(call, fn, {
        selector: argText(fn, 'selector', args[0]),
        sdid: call.env.config.server.domain,
        ...(args[1] !== undefined ? { headers: headerList(fn, args[1]) } : {}),
        ...(args[2] !== undefined ? { canonicalization: argText(fn, 'canonicalization', args[2]) } : {}),
      });
    },
  },
];
