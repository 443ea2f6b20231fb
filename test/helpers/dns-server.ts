// A real DNS server on 127.0.0.1 for tests (UDP and TCP on the same port).
//
// The production code never talks to public DNS in tests: point the resolver
// (`createResolver({ servers: [dns.address], timeoutMs })`, or the config key
// `server.dns.servers = [dns.address]`) at this server and describe the zone.
//
//   const dns = await startDnsServer({
//     'example.test': { A: ['192.0.2.1'], MX: [{ priority: 10, exchange: 'mx.example.test' }],
//                       TXT: ['v=spf1 -all'], ttl: 60 },
//     'mx.example.test': { A: ['192.0.2.25'] },
//     '1.2.0.192.in-addr.arpa': { PTR: ['mail.example.test'] },
//     'slow.test': { A: ['192.0.2.9'], delayMs: 300 },
//     'broken.test': { behaviour: 'servfail' },
//   });
//   try { ... } finally { await dns.stop(); }
//
// Answers:
// - an unknown name gets NXDOMAIN; a known name asked for a type it lacks gets
//   NOERROR with no answers (NODATA);
// - names are matched case-insensitively, without the trailing dot; there are
//   no wildcards, no CNAMEs and no delegation: the server is authoritative for
//   every name it knows and for nothing else;
// - `behaviour` changes how a name is answered, for every type:
//     'servfail'  rcode SERVFAIL          'refused'  rcode REFUSED
//     'timeout'   never answers           'malformed' the query id, then garbage bytes
//     'huge'      500 A records (or TXT strings for a TXT query): over UDP it is
//                 sent truncated (TC bit), so the client retries over TCP;
// - `delayMs` waits before answering (any behaviour but 'timeout');
// - a UDP answer larger than the client's EDNS buffer (512 without EDNS) is
//   sent with TC set and no records, as a real server does.
//
// `queries` records every question received, as "name TYPE" (name lower-case),
// in arrival order, so tests can assert that a cache held or that a lookup was
// (not) made. `setRecords(z)` replaces the whole zone; `stop()` closes both
// sockets and cancels pending delayed answers.
//
// `unusedUdpPort()` gives a port on 127.0.0.1 where nothing listens, for
// "the DNS server does not answer" tests.

import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type Behaviour = 'servfail' | 'refused' | 'timeout' | 'malformed' | 'huge';

export interface MxSpec {
  priority: number;
  exchange: string;
}

/** Everything the server knows about one owner name. */
export interface NameRecords {
  A?: string[];
  AAAA?: string[];
  /** `{ priority, exchange }` or `"10 mx.example.test"`. */
  MX?: Array<MxSpec | string>;
  /** One string per TXT record, or an array of character-strings for a multi-string record. */
  TXT?: Array<string | string[]>;
  PTR?: string[];
  NS?: string[];
  /** TTL of every record of this name (default 300). */
  ttl?: number;
  behaviour?: Behaviour;
  delayMs?: number;
}

/** The zone: owner name (any case, trailing dot optional) → records. */
export type Records = Record<string, NameRecords>;

export interface DnsTestServer {
  port: number;
  /** "127.0.0.1:<port>", ready for createResolver / server.dns.servers. */
  address: string;
  setRecords(zone: Records): void;
  stop(): Promise<void>;
  queries: string[];
}

const HUGE_COUNT = 500;

function normaliseName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function normaliseZone(zone: Records): Map<string, NameRecords> {
  const m = new Map<string, NameRecords>();
  for (const [name, recs] of Object.entries(zone)) m.set(normaliseName(name), recs);
  return m;
}

function mxOf(spec: MxSpec | string): MxSpec {
  if (typeof spec !== 'string') return spec;
  const [pref, host] = spec.trim().split(/\s+/);
  return { priority: Number(pref), exchange: host ?? '' };
}

/** Splits a long TXT string into 255-byte character-strings, as a zone file would. */
function txtChunks(value: string | string[]): string[] {
  if (Array.isArray(value)) return value;
  const chunks: string[] = [];
  for (let i = 0; i < value.length; i += 255) chunks.push(value.slice(i, i + 255));
  return chunks.length ? chunks : [''];
}

function answersFor(name: string, type: string, recs: NameRecords): dnsPacket.Answer[] {
  const ttl = recs.ttl ?? 300;
  if (recs.behaviour === 'huge') {
    const out: dnsPacket.Answer[] = [];
    for (let i = 0; i < HUGE_COUNT; i++) {
      if (type === 'TXT') out.push({ type: 'TXT', name, ttl, data: [`record-${i}`] });
      else out.push({ type: 'A', name, ttl, data: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
    }
    return out;
  }
  switch (type) {
    case 'A':
      return (recs.A ?? []).map((data) => ({ type: 'A', name, ttl, data }));
    case 'AAAA':
      return (recs.AAAA ?? []).map((data) => ({ type: 'AAAA', name, ttl, data }));
    case 'MX':
      return (recs.MX ?? []).map((s) => {
        const mx = mxOf(s);
        return { type: 'MX', name, ttl, data: { preference: mx.priority, exchange: mx.exchange } };
      });
    case 'TXT':
      return (recs.TXT ?? []).map((t) => ({ type: 'TXT', name, ttl, data: txtChunks(t) }));
    case 'PTR':
      return (recs.PTR ?? []).map((data) => ({ type: 'PTR', name, ttl, data }));
    case 'NS':
      return (recs.NS ?? []).map((data) => ({ type: 'NS', name, ttl, data }));
    default:
      return [];
  }
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** What to send back for one decoded query: bytes, or null for "never answer". */
interface Plan {
  delayMs: number;
  build(maxSize: number): Buffer | null;
}

function plan(query: dnsPacket.DecodedPacket, zone: Map<string, NameRecords>): Plan {
  const q = query.questions?.[0];
  const base = {
    type: 'response' as const,
    id: query.id ?? 0,
    questions: query.questions ?? [],
  };
  const response = (rcode: number, answers: dnsPacket.Answer[] = []): dnsPacket.Packet => ({
    ...base,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED | rcode,
    answers,
  });
  const sized = (packet: dnsPacket.Packet) => (maxSize: number): Buffer => {
    const full = dnsPacket.encode(packet);
    if (full.length <= maxSize) return full;
    return dnsPacket.encode({ ...packet, answers: [], flags: (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE });
  };
  if (!q) return { delayMs: 0, build: sized(response(RCODE.FORMERR)) };
  const name = normaliseName(q.name);
  const recs = zone.get(name);
  if (!recs) return { delayMs: 0, build: sized(response(RCODE.NXDOMAIN)) };
  const delayMs = recs.delayMs ?? 0;
  switch (recs.behaviour) {
    case 'timeout':
      return { delayMs: 0, build: () => null };
    case 'servfail':
      return { delayMs, build: sized(response(RCODE.SERVFAIL)) };
    case 'refused':
      return { delayMs, build: sized(response(RCODE.REFUSED)) };
    case 'malformed':
      return {
        delayMs,
        build: () => {
          // The right id (so the client pairs it with its query), then a header
          // claiming records that are not there, then noise.
          const b = Buffer.alloc(40, 0xff);
          b.writeUInt16BE(query.id ?? 0, 0);
          b.writeUInt16BE(0x8180, 2);
          b.writeUInt16BE(1, 4);
          b.writeUInt16BE(7, 6);
          return b;
        },
      };
    default:
      return { delayMs, build: sized(response(RCODE.NOERROR, answersFor(q.name, q.type, recs))) };
  }
}

/** The UDP payload size the client advertised (EDNS0), or 512. */
function udpLimit(query: dnsPacket.DecodedPacket): number {
  const opt = query.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined;
  return opt ? Math.max(512, opt.udpPayloadSize) : 512;
}

export async function startDnsServer(zone: Records): Promise<DnsTestServer> {
  let current = normaliseZone(zone);
  const queries: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<net.Socket>();
  let stopped = false;

  const later = (ms: number, fn: () => void) => {
    if (ms <= 0) return fn();
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopped) fn();
    }, ms);
    timers.add(t);
  };

  const decode = (buf: Buffer): dnsPacket.DecodedPacket | null => {
    try {
      const p = dnsPacket.decode(buf);
      for (const q of p.questions ?? []) queries.push(`${normaliseName(q.name)} ${q.type}`);
      return p;
    } catch {
      return null;
    }
  };

  const makeUdp = (): dgram.Socket => {
    const sock = dgram.createSocket('udp4');
    sock.on('message', (msg, rinfo) => {
      const query = decode(msg);
      if (!query) return;
      const p = plan(query, current);
      later(p.delayMs, () => {
        const out = p.build(udpLimit(query));
        if (out && !stopped) sock.send(out, rinfo.port, rinfo.address);
      });
    });
    return sock;
  };

  // TCP: 2-byte length prefix per message (RFC 1035 §4.2.2); answers are never truncated.
  const tcp = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const query = decode(msg);
        if (!query) {
          sock.destroy();
          return;
        }
        const p = plan(query, current);
        later(p.delayMs, () => {
          const out = p.build(65535);
          if (!out || sock.destroyed) return;
          const len2 = Buffer.alloc(2);
          len2.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len2, out]));
        });
      }
    });
  });

  // Bind UDP on an ephemeral port, then TCP on the same number; retry if taken.
  let udp: dgram.Socket | null = null;
  let port = 0;
  for (let attempt = 0; udp === null; attempt++) {
    if (attempt >= 20) throw new Error('dns test server: no free port for both UDP and TCP');
    const candidate = makeUdp();
    await new Promise<void>((resolve, reject) => {
      candidate.once('error', reject);
      candidate.bind(0, '127.0.0.1', () => {
        candidate.off('error', reject);
        resolve();
      });
    });
    port = candidate.address().port;
    const tcpOk = await new Promise<boolean>((resolve) => {
      const onError = () => resolve(false);
      tcp.once('error', onError);
      tcp.listen(port, '127.0.0.1', () => {
        tcp.off('error', onError);
        resolve(true);
      });
    });
    if (tcpOk) udp = candidate;
    else await new Promise<void>((resolve) => candidate.close(() => resolve()));
  }
  if (!udp) throw new Error('dns test server: not bound');
  const boundUdp: dgram.Socket = udp;

  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    setRecords(z: Records) {
      current = normaliseZone(z);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => boundUdp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

/**
 * A UDP port on 127.0.0.1 where nothing listens (bound briefly, then
 * released). Queries sent there get no answer (or ICMP port unreachable),
 * which a resolver must report as a timeout or error within its deadline.
 */
export async function unusedUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
