// Forward targets (SPEC §7.6): where `transport::forward` and a non-"mx"
// `delivery.default` send mail. Accepted forms:
//
//   host   host:port   192.0.2.1   [2001:db8::1]:2525   2001:db8::1
//   smtp://[user:pass@]host[:port][?tls=none|opportunistic|required|tunnel]
//   smtps://[user:pass@]host[:port]
//
// Plain forms and smtp:// default to port 25 and opportunistic STARTTLS;
// smtps:// is TLS from the first byte on port 465. Credentials in a URL are
// percent-encoded.

import net from 'node:net';
import type { TlsMode } from './smtp-client.js';

export interface RelayTarget {
  /** Host name (lower-case) or IP address (IPv6 without brackets). */
  host: string;
  port: number;
  tls: TlsMode;
  auth: { user: string; pass: string } | null;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

function checkHost(host: string, text: string): string {
  const h = host.toLowerCase();
  if (net.isIP(h) || HOSTNAME.test(h)) return h;
  throw new Error(`invalid forward target ${JSON.stringify(text)}: bad host ${JSON.stringify(host)}`);
}

function checkPort(port: string, text: string): number {
  const n = Number(port);
  if (!/^\d{1,5}$/.test(port) || n < 1 || n > 65535) throw new Error(`invalid forward target ${JSON.stringify(text)}: bad port`);
  return n;
}

function parseUrl(text: string): RelayTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`invalid forward target ${JSON.stringify(text)}: not a URL`);
  }
  const tunnel = url.protocol === 'smtps:';
  if (url.pathname !== '' && url.pathname !== '/') throw new Error(`invalid forward target ${JSON.stringify(text)}: unexpected path`);
  let tls: TlsMode = tunnel ? 'tunnel' : 'opportunistic';
  for (const [key, value] of url.searchParams) {
    if (key !== 'tls' || tunnel) throw new Error(`invalid forward target ${JSON.stringify(text)}: unknown parameter ${key}`);
    if (value !== 'none' && value !== 'opportunistic' && value !== 'required' && value !== 'tunnel') {
      throw new Error(`invalid forward target ${JSON.stringify(text)}: tls must be none, opportunistic, required or tunnel`);
    }
    tls = value;
  }
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? checkPort(url.port, text) : tls === 'tunnel' ? 465 : 25;
  let auth: RelayTarget['auth'] = null;
  if (url.username || url.password) {
    try {
      auth = { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
    } catch {
      throw new Error(`invalid forward target ${JSON.stringify(text)}: bad percent-encoding in credentials`);
    }
  }
  return { host: checkHost(hostname, text), port, tls, auth };
}

/** Parses a forward target; throws an Error naming the problem. */
export function parseForwardTarget(target: string): RelayTarget {
  const text = target.trim();
  if (/^smtps?:\/\//i.test(text)) return parseUrl(text);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new Error(`invalid forward target ${JSON.stringify(text)}: only smtp:// and smtps:// URLs`);
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    if (!net.isIPv6(bracketed[1]!)) throw new Error(`invalid forward target ${JSON.stringify(text)}: bad IPv6 address`);
    return { host: bracketed[1]!.toLowerCase(), port: bracketed[2] ? checkPort(bracketed[2], text) : 25, tls: 'opportunistic', auth: null };
  }
  if (net.isIPv6(text)) return { host: text.toLowerCase(), port: 25, tls: 'opportunistic', auth: null };
  const hostPort = /^([^:]+):(\d+)$/.exec(text);
  if (hostPort) return { host: checkHost(hostPort[1]!, text), port: checkPort(hostPort[2]!, text), tls: 'opportunistic', auth: null };
  return { host: checkHost(text, text), port: 25, tls: 'opportunistic', auth: null };
}

/** A stable key naming the destination (connections are shared per key). */
export function relayKey(t: RelayTarget): string {
  return `relay:${t.tls}:${t.auth ? `${t.auth.user}@` : ''}${t.host}:${t.port}`;
}
