// The open-relay probes of `mta relay-test`: the classic ways of asking a
// server to pass mail from an outside sender to an outside recipient, each
// written against the server's local domain (SPEC §4.4, §5.6). A closed
// server refuses every one of them; a 2xx to any RCPT below is a hole.
//
// The list is data: one probe is a MAIL path and a RCPT path, nothing else.
// The runners (smtp-runner.ts over a socket, in-process.ts through
// `explain()`) send them; verdict.ts judges the replies.

/** The domains a probe list is written against. */
export interface ProbeDomains {
  /** A domain the server receives mail for (server.domain). */
  local: string;
  /** The outside sender's domain. */
  sender: string;
  /** The third party's domain, where relayed mail would go. */
  outside: string;
  /** The server's own address, for address-literal probes (`192.0.2.25`, `2001:db8::25`), when known. */
  serverIp?: string;
}

export interface RelayProbe {
  /** Stable identifier (`percent-hack`), for --json and tests. */
  id: string;
  /** What the probe tries, in words. */
  title: string;
  /** The MAIL path, with its angle brackets. */
  mailFrom: string;
  /** The RCPT path, with its angle brackets. */
  rcptTo: string;
  /** The paths hold non-ASCII: MAIL carries SMTPUTF8 when the server offers it. */
  smtputf8: boolean;
}

/** The local part every probe uses: easy to find in a server's logs. */
export const PROBE_USER = 'relaytest';

/** Fullwidth `＠` and `％` and the small commercial at `﹫`: NFKC makes them `@` and `%`. */
const FULLWIDTH_AT = '\uFF20';
const FULLWIDTH_PERCENT = '\uFF05';
const SMALL_AT = '\uFE6B';
/** `。`: IDNA maps it to a label separator `.`. */
const IDEOGRAPHIC_STOP = '\u3002';

function probe(id: string, title: string, mailFrom: string, rcptTo: string): RelayProbe {
  const nonAscii = /[^\x20-\x7e]/.test(mailFrom + rcptTo);
  return { id, title, mailFrom, rcptTo, smtputf8: nonAscii };
}

/** An upper-case / mixed-case spelling of a domain that still names it. */
function mixedCase(d: string): string {
  let up = false;
  return d.replace(/[a-z]/g, (c) => ((up = !up) ? c.toUpperCase() : c));
}

/** The same letters in fullwidth forms (`ｅｘａｍｐｌｅ.org`): IDNA maps them back to ASCII. */
function fullwidth(d: string): string {
  return d.replace(/[a-z0-9]/g, (c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0));
}

/** An address literal for an IP (`[192.0.2.1]`, `[IPv6:2001:db8::1]`). */
export function addressLiteral(ip: string): string {
  return ip.includes(':') ? `[IPv6:${ip}]` : `[${ip}]`;
}

/** The outside sender and the third-party recipient every plain probe uses. */
function parties(d: ProbeDomains): { from: string; to: string } {
  return { from: `<${PROBE_USER}@${d.sender}>`, to: `<${PROBE_USER}@${d.outside}>` };
}

/**
 * A recipient the server must accept from anyone: `postmaster@<local>`.
 * Not a relay probe: when even this is refused, the client is probably
 * blocked, and the results say little about other clients.
 */
export function controlProbe(d: ProbeDomains): RelayProbe {
  return probe('control-local-postmaster', 'control: an outside sender to postmaster of the local domain (should be accepted)', parties(d).from, `<postmaster@${d.local}>`);
}

/** Every relay probe, in the order they are run and printed. */
export function relayProbes(d: ProbeDomains): RelayProbe[] {
  const u = PROBE_USER;
  const { from, to } = parties(d);
  const L = d.local;
  const O = d.outside;
  const list: RelayProbe[] = [
    // The envelope alone.
    probe('third-party', 'plain third party: outside sender to outside recipient', from, to),
    probe('null-sender', 'null sender to outside recipient', '<>', to),
    probe('spoofed-local-sender', 'spoofed local sender to outside recipient', `<${u}@${L}>`, to),
    probe('spoofed-postmaster', 'spoofed local postmaster to outside recipient', `<postmaster@${L}>`, to),
    probe('spoofed-bare-sender', 'sender without a domain to outside recipient', `<${u}>`, to),
    // Routing hidden in the local part of a local address.
    probe('percent-hack', '%-hack: user%outside@local', from, `<${u}%${O}@${L}>`),
    probe('percent-hack-quoted', 'quoted %-hack: "user%outside"@local', from, `<"${u}%${O}"@${L}>`),
    probe('percent-hack-no-domain', '%-hack without a domain: user%outside', from, `<${u}%${O}>`),
    probe('quoted-at', 'quoted @: "user@outside"@local', from, `<"${u}@${O}"@${L}>`),
    probe('escaped-at-quoted', 'escaped @ in quotes: "user\\@outside"@local', from, `<"${u}\\@${O}"@${L}>`),
    probe('escaped-at', 'escaped @ unquoted: user\\@outside@local', from, `<${u}\\@${O}@${L}>`),
    probe('double-at', 'double @: user@outside@local', from, `<${u}@${O}@${L}>`),
    probe('double-at-reversed', 'double @, local first: user@local@outside', from, `<${u}@${L}@${O}>`),
    probe('bang-path', 'bang path: outside!user@local', from, `<${O}!${u}@${L}>`),
    probe('bang-path-reversed', 'bang path, reversed: user!outside@local', from, `<${u}!${O}@${L}>`),
    probe('bang-path-quoted', 'quoted bang path: "outside!user"@local', from, `<"${O}!${u}"@${L}>`),
    probe('bang-path-no-domain', 'bang path without a domain: outside!user', from, `<${O}!${u}>`),
    probe('bang-and-percent', 'bang and %: outside!user%local@local', from, `<${O}!${u}%${L}@${L}>`),
    // Source routes: only the final mailbox counts (RFC 5321 §3.6.1).
    probe('source-route', 'source route: <@local:user@outside>', from, `<@${L}:${u}@${O}>`),
    probe('source-route-two-hops', 'source route over two hops: <@local,@local:user@outside>', from, `<@${L},@${L}:${u}@${O}>`),
    probe('source-route-percent', 'source route to a %-hack: <@local:user%outside@local>', from, `<@${L}:${u}%${O}@${L}>`),
    // Address literals are never local (SPEC §4.4).
    probe('ip-literal', 'IPv4 address literal: user@[192.0.2.1]', from, `<${u}@[192.0.2.1]>`),
    probe('ipv6-literal', 'IPv6 address literal: user@[IPv6:2001:db8::1]', from, `<${u}@[IPv6:2001:db8::1]>`),
    probe('ipv4-mapped-literal', 'IPv4-mapped IPv6 literal: user@[IPv6:::ffff:192.0.2.1]', from, `<${u}@[IPv6:::ffff:192.0.2.1]>`),
    probe('loopback-literal', 'loopback literal: user@[127.0.0.1]', from, `<${u}@[127.0.0.1]>`),
    probe('literal-percent-hack', '%-hack at a loopback literal: user%outside@[127.0.0.1]', from, `<${u}%${O}@[127.0.0.1]>`),
  ];
  if (d.serverIp !== undefined && d.serverIp !== '127.0.0.1') {
    const lit = addressLiteral(d.serverIp);
    list.push(
      probe('server-literal', `the server's own address literal: user@${lit}`, from, `<${u}@${lit}>`),
      probe('server-literal-percent-hack', `%-hack at the server's address literal: user%outside@${lit}`, from, `<${u}%${O}@${lit}>`),
    );
  }
  list.push(
    // Domains that only look local: comparison is label-wise (SPEC §4.4).
    probe('lookalike-suffix', 'local domain as a prefix: user@local.outside', from, `<${u}@${L}.${O}>`),
    probe('lookalike-glued', 'local domain glued to another name: user@evillocal', from, `<${u}@evil${L}>`),
    probe('lookalike-hyphen', 'local domain after a hyphen: user@evil-local', from, `<${u}@evil-${L}>`),
    probe('lookalike-subdomain', 'subdomain of the local domain: user@sub.local', from, `<${u}@relaytest-sub.${L}>`),
    // Spellings of the outside domain.
    probe('case-upper', 'upper-case outside address: USER@OUTSIDE', from, `<${u.toUpperCase()}@${O.toUpperCase()}>`),
    probe('case-mixed', 'mixed-case outside domain', from, `<${u}@${mixedCase(O)}>`),
    probe('trailing-dot', 'trailing root dot: user@outside.', from, `<${u}@${O}.>`),
    probe('trailing-dot-local', 'trailing root dot on a %-hack: user%outside@local.', from, `<${u}%${O}@${L}.>`),
    probe('fullwidth-domain', 'fullwidth outside domain (IDNA maps it to ASCII)', from, `<${u}@${fullwidth(O)}>`),
    probe('ideographic-dot', 'local domain, ideographic full stop, outside domain: user@local。outside', from, `<${u}@${L}${IDEOGRAPHIC_STOP}${O}>`),
    // Look-alike routing characters (SPEC §4.4: after NFKC).
    probe('fullwidth-at', 'fullwidth ＠ in the local part: user＠outside@local', from, `<${u}${FULLWIDTH_AT}${O}@${L}>`),
    probe('small-at', 'small commercial at ﹫ in the local part', from, `<${u}${SMALL_AT}${O}@${L}>`),
    probe('fullwidth-percent', 'fullwidth ％ in the local part: user％outside@local', from, `<${u}${FULLWIDTH_PERCENT}${O}@${L}>`),
  );
  return list;
}
