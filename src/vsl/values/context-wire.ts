// How one stage evaluation's context data (ContextData, below)
// crosses into the sandbox. Decoding it was most of the cost of a simple
// rule (QuickJS parses JSON object keys slowly), so:
//   - each part is a JSON array with fixed positions, not an object;
//   - the parts travel separately after a short header giving `now` and
//     the lengths of the session and credentials parts (searching a long
//     string is slow in QuickJS): `<now> <len> <len>\u0001<session><creds><txn>`;
//   - the guest decodes a part only when a rule reads it, and keeps the
//     recently decoded session and transaction parts by their text: a
//     session's text stays the same from MAIL to the end of DATA, a
//     transaction's across the rules of one RCPT.
// Both sides use this module, so the positions cannot drift apart.

import type { MailAddress } from '../../mail/types.js';

/** Per-evaluation data sent by the host (src/policy/snapshot.ts builds it). */
export interface ContextData {
  now: number;
  session: {
    id: string;
    listener: string;
    clientIp: string;
    clientPort: number;
    serverIp: string;
    serverPort: number;
    serverName: string;
    connectedAt: number;
    tls: boolean;
    helo: string | null;
    auth: { mechanism: string; authid: string } | null;
  };
  creds: { mechanism: string; authid: string; authpass: string } | null;
  txn: {
    id: string;
    mailFrom: MailAddress;
    mailAt: number;
    rcpts: MailAddress[];
    current: MailAddress | null;
  } | null;
}

type AddrWire = [local: string, domain: string, raw: string, isNull: 0 | 1];
type SessionWire = [string, string, string, number, string, number, string, number, 0 | 1, string | null, string | null, string | null];
type TxnWire = [string, AddrWire, number, AddrWire[], AddrWire | null];

function addrToWire(a: MailAddress): AddrWire {
  return [a.local, a.domain, a.raw, a.isNull ? 1 : 0];
}

function addrFromWire(w: AddrWire): MailAddress {
  return { local: w[0], domain: w[1], raw: w[2], isNull: w[3] === 1 };
}

export function encodeContext(c: ContextData): string {
  const s = c.session;
  const t = c.txn;
  const session: SessionWire = [
    s.id, s.listener, s.clientIp, s.clientPort, s.serverIp, s.serverPort, s.serverName, s.connectedAt,
    s.tls ? 1 : 0, s.helo, s.auth ? s.auth.mechanism : null, s.auth ? s.auth.authid : null,
  ];
  const creds = c.creds ? [c.creds.mechanism, c.creds.authid, c.creds.authpass] : null;
  const txn: TxnWire | null = t ? [t.id, addrToWire(t.mailFrom), t.mailAt, t.rcpts.map(addrToWire), t.current ? addrToWire(t.current) : null] : null;
  const sessionText = JSON.stringify(session);
  const credsText = JSON.stringify(creds);
  return `${c.now} ${sessionText.length} ${credsText.length}\u0001${sessionText}${credsText}${JSON.stringify(txn)}`;
}

/** Decoded parts by their text; cleared when full (a few hundred concurrent sessions at most matter). */
const sessions = new Map<string, ContextData['session']>();
const txns = new Map<string, ContextData['txn']>();
const CACHE_MAX = 256;

function remember<T>(cache: Map<string, T>, text: string, decode: (text: string) => T): T {
  let v = cache.get(text);
  if (v === undefined) {
    v = decode(text);
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(text, v);
  }
  return v;
}

function decodeSession(text: string): ContextData['session'] {
  const w = JSON.parse(text) as SessionWire;
  return {
    id: w[0], listener: w[1], clientIp: w[2], clientPort: w[3], serverIp: w[4], serverPort: w[5], serverName: w[6],
    connectedAt: w[7], tls: w[8] === 1, helo: w[9], auth: w[10] === null ? null : { mechanism: w[10], authid: w[11] ?? '' },
  };
}

function decodeTxn(text: string): ContextData['txn'] {
  const t = JSON.parse(text) as TxnWire | null;
  return t ? { id: t[0], mailFrom: addrFromWire(t[1]), mailAt: t[2], rcpts: t[3].map(addrFromWire), current: t[4] ? addrFromWire(t[4]) : null } : null;
}

/**
 * The context of one evaluation; its parts are decoded when first read.
 * Read-only: parts are shared. (Fields are `declare`d and getters live on
 * the prototype: no per-evaluation closures or defined properties.)
 */
class LazyContext implements ContextData {
  declare readonly now: number;
  declare private readonly text: string;
  declare private readonly sessionAt: number;
  declare private readonly credsAt: number;
  declare private readonly txnAt: number;
  declare private decodedSession: ContextData['session'] | undefined;
  declare private decodedCreds: ContextData['creds'] | undefined;
  declare private decodedTxn: ContextData['txn'] | undefined;

  constructor(text: string) {
    const h = text.indexOf('\u0001');
    const header = text.slice(0, h).split(' '); // now, session length, credentials length
    this.now = Number(header[0]);
    this.text = text;
    this.sessionAt = h + 1;
    this.credsAt = this.sessionAt + Number(header[1]);
    this.txnAt = this.credsAt + Number(header[2]);
  }

  get session(): ContextData['session'] {
    return (this.decodedSession ??= remember(sessions, this.text.slice(this.sessionAt, this.credsAt), decodeSession));
  }

  get creds(): ContextData['creds'] {
    if (this.decodedCreds === undefined) {
      const w = JSON.parse(this.text.slice(this.credsAt, this.txnAt)) as [string, string, string] | null;
      this.decodedCreds = w ? { mechanism: w[0], authid: w[1], authpass: w[2] } : null;
    }
    return this.decodedCreds;
  }

  get txn(): ContextData['txn'] {
    if (this.decodedTxn === undefined) this.decodedTxn = remember(txns, this.text.slice(this.txnAt), decodeTxn);
    return this.decodedTxn;
  }
}

export function decodeContext(text: string): ContextData {
  return new LazyContext(text);
}
