// The SMTP state machine of one session: commands in, stages run, replies
// out (SPEC §4). One method per command; AUTH lives in auth.ts and the end
// of DATA in data.ts. The connection (connection.ts) feeds it one line at a
// time, in order, and waits for each command to finish before the next:
// pipelined commands keep their order and their replies.

import { isUtf8 } from 'node:buffer';
import type { Logger } from 'pino';
import type { Applied } from '../policy/apply.js';
import { addressText, type Reply, type Transaction } from '../mail/types.js';
import { parsePath, parsePathArgument } from '../vsl/values/address.js';
import { parseIPv4, parseIPv6 } from '../vsl/values/net.js';
import { handleAuth, handleAuthContinuation, type SaslState } from './auth.js';
import type { FrontContext, ListenerContext } from './context.js';
import { receiveMessage } from './data.js';
import { sameAddress } from '../mail/effects.js';
import { afterKeyword, mailParams, rcptParams } from './params.js';
import { makeReply, replyFromString } from '../mail/reply.js';
import { R } from './replies.js';
import type { Settings } from './settings.js';
import { decideStage } from '../policy/stage-machine.js';
import type { SessionState } from './state.js';
import type { Wire } from './wire.js';

// Control characters in a command line (tab aside): NUL and friends have no
// business there and are a classic truncation trick against later consumers.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f]/;
const HTTP_REQUEST = /^(?:GET|HEAD|POST|PUT|DELETE|OPTIONS|TRACE|CONNECT|PATCH) \S+ HTTP\/\d/i;

/** A command: its arguments with trailing blanks removed, the verb, and the arguments exactly as sent. */
type Handler = (p: SmtpProtocol, args: string, verb: string, rawArgs: string) => Promise<void>;

export class SmtpProtocol {
  /** A SASL exchange waiting for the client's next line. */
  sasl: SaslState | null = null;
  /** DATA is being received or processed (the transaction cannot end under it). */
  inData = false;

  constructor(
    readonly listener: ListenerContext,
    readonly wire: Wire,
    readonly state: SessionState,
    readonly log: Logger,
  ) {}

  get front(): FrontContext {
    return this.listener.front;
  }

  get settings(): Settings {
    return this.front.settings();
  }

  /** The connect stage (SPEC §4.1): its result decides the greeting. */
  async connect(): Promise<Applied> {
    const { applied } = await decideStage(this.front, this.state, this.log, 'connect', R.greeting(this.settings.serverName));
    this.state.markConnected();
    return applied;
  }

  /** One line from the client: a command, or the answer to an AUTH challenge. */
  async line(raw: Buffer): Promise<void> {
    if (raw.length > this.settings.lineLengthMax) {
      this.sasl = null;
      await this.wire.reply(R.lineTooLong);
      return;
    }
    if (!isUtf8(raw)) {
      this.sasl = null;
      await this.wire.reply(R.unknownCommand);
      return;
    }
    const text = raw.toString('utf8');
    if (this.sasl !== null) {
      await handleAuthContinuation(this, text);
      return;
    }
    if (CONTROLS.test(text)) {
      await this.wire.reply(R.unknownCommand);
      return;
    }
    const trimmed = text.replace(/[ \t]+$/, '');
    const sp = trimmed.indexOf(' ');
    const verb = (sp < 0 ? trimmed : trimmed.slice(0, sp)).toUpperCase();
    const args = sp < 0 ? '' : trimmed.slice(sp + 1);
    const handler = COMMANDS[verb];
    if (handler !== undefined) {
      await handler(this, args, verb, sp < 0 ? text.slice(verb.length) : text.slice(sp + 1));
      return;
    }
    if (HTTP_REQUEST.test(trimmed)) {
      // A web page trying to talk SMTP through the browser: nothing more to say to it.
      this.log.info('HTTP request on the SMTP port, closing');
      this.wire.replyAndClose(R.unknownCommand);
      return;
    }
    await this.wire.reply(R.unknownCommand);
  }

  /** Whether EHLO offers AUTH now (SPEC §4.5 capabilities). */
  authOffered(): boolean {
    const s = this.settings;
    const session = this.state.session;
    return s.authMechanisms.length > 0 && this.front.runner.hasRules('authenticate') && session.auth === null && (session.tls !== null || !s.authRequiresTls);
  }

  /** The EHLO reply: the server name, then the capabilities (SPEC §4.5). */
  ehloReply(): Reply {
    const s = this.settings;
    const lines = [s.serverName, 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', `SIZE ${s.messageSizeLimit}`];
    if (this.front.tlsAvailable() && this.state.session.tls === null) lines.push('STARTTLS');
    if (this.authOffered()) lines.push(`AUTH ${s.authMechanisms.join(' ')}`);
    return { code: 250, enhanced: '', lines };
  }

  /** The server name of the session given the TLS SNI (SPEC §4.2 ctx::server_name()). */
  serverNameFor(sni: string | undefined): string {
    const s = this.settings;
    if (sni === undefined || sni === '') return s.serverName;
    const name = sni.toLowerCase();
    return name === s.serverName.toLowerCase() || s.relay.isLocalDomain(name) ? name : s.serverName;
  }

  /** Replies with the outcome of a stage, closing when it says so. */
  async replyApplied(applied: Applied): Promise<void> {
    await this.wire.reply(applied.reply, { close: applied.close });
  }
}

async function helo(p: SmtpProtocol, _args: string, verb: string, rawArgs: string): Promise<void> {
  p.wire.markAwaited();
  // Exactly one space, the name, nothing after it (RFC 5321 §4.1.1.1): a
  // doubled or trailing blank is refused, as vSMTP does.
  const host = rawArgs;
  if (host === '' || /\s/.test(host) || host.length > 255 || (p.settings.heloStrict && !isHeloName(host))) {
    await p.wire.reply(R.badArguments(`Syntax: ${verb} hostname`));
    return;
  }
  const { state } = p;
  // Any HELO/EHLO ends the transaction (SPEC §4.3); the stage sees the new name.
  state.endTransaction();
  state.session.helo = host;
  state.session.esmtp = verb === 'EHLO';
  const normal = verb === 'EHLO' ? p.ehloReply() : makeReply(250, '', p.settings.serverName);
  const { applied } = await decideStage(p.front, state, p.log, 'helo', normal);
  // A refused HELO is not recorded: MAIL gets 503 until one succeeds.
  if (!applied.accept) state.session.helo = null;
  await p.replyApplied(applied);
}

/**
 * A HELO/EHLO argument as RFC 5321 §4.1.2 writes it: a domain (LDH labels;
 * UTF-8 labels allowed, RFC 6531) or an address literal `[a.b.c.d]` /
 * `[IPv6:…]`. Checked only under `server.smtp.helo_syntax = "strict"`:
 * otherwise such names reach the helo rules (SPEC §8.2 judges them there).
 */
function isHeloName(host: string): boolean {
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) return false;
    const inner = host.slice(1, -1);
    if (/^ipv6:/i.test(inner)) return parseIPv6(inner.slice(5)) !== null;
    return parseIPv4(inner) !== null;
  }
  const labels = host.split('.');
  return labels.every((l) => l.length >= 1 && l.length <= 63 && /^(?:[A-Za-z0-9]|[^\x00-\x7f])(?:[A-Za-z0-9-]|[^\x00-\x7f])*$/.test(l) && !l.endsWith('-'));
}

async function mail(p: SmtpProtocol, args: string): Promise<void> {
  const { state, settings: s } = p;
  const session = state.session;
  if (session.helo === null || state.txn !== null) {
    await p.wire.reply(R.badSequence);
    return;
  }
  if (p.listener.kind !== 'smtp' && session.auth === null) {
    await p.wire.reply(R.authRequired);
    return;
  }
  const kw = afterKeyword(args, 'FROM');
  if (!kw.ok) {
    await p.wire.reply(kw.reply);
    return;
  }
  // The parameters (SMTPUTF8) decide how the path is read, and follow it:
  // split leniently first, then check the path with the real SMTPUTF8 flag.
  const split = parsePathArgument(kw.rest, { kind: 'mail', smtputf8: true, serverDomain: s.domain });
  if (!split.ok) {
    await p.wire.reply(replyFromString(split.reply));
    return;
  }
  const params = mailParams(split.params, s.messageSizeLimit);
  if (!params.ok) {
    await p.wire.reply(params.reply);
    return;
  }
  const path = parsePath(split.address.raw, { kind: 'mail', smtputf8: params.value.smtputf8, serverDomain: s.domain });
  if (!path.ok) {
    await p.wire.reply(replyFromString(path.reply));
    return;
  }
  const txn: Transaction = {
    id: p.front.newId(),
    mailFrom: path.address,
    mailAt: new Date(p.front.clock.now()),
    rcpts: [],
    currentRcpt: null,
    remembered: null,
    pendingHeaders: [],
  };
  state.txn = txn;
  state.txx = { smtputf8: params.value.smtputf8, clientRcpts: 0, messageEdits: [] };
  const result = await decideStage(p.front, state, p.log, 'mail', R.mailOk);
  // No transaction unless MAIL got 2xx (SPEC §5.1 invariant).
  if (!result.applied.accept) state.endTransaction();
  await p.replyApplied(result.applied);
}

async function rcpt(p: SmtpProtocol, args: string): Promise<void> {
  const { state, settings: s } = p;
  const txn = state.txn;
  const txx = state.txx;
  if (txn === null || txx === null) {
    await p.wire.reply(R.badSequence);
    return;
  }
  const kw = afterKeyword(args, 'TO');
  if (!kw.ok) {
    await p.wire.reply(kw.reply);
    return;
  }
  const parsed = parsePathArgument(kw.rest, { kind: 'rcpt', smtputf8: txx.smtputf8, serverDomain: s.domain });
  if (!parsed.ok) {
    await p.wire.reply(replyFromString(parsed.reply));
    return;
  }
  const params = rcptParams(parsed.params);
  if (!params.ok) {
    await p.wire.reply(params.reply);
    return;
  }
  if (txx.clientRcpts >= s.rcptCountMax) {
    await p.wire.reply(R.tooManyRcpts);
    return;
  }
  const address = parsed.address;
  const previous = txn.currentRcpt;
  // The recipient under evaluation is tentatively the last of the list; it
  // stays only if the reply is 2xx (SPEC §4.2, §5.1).
  const duplicate = txn.rcpts.some((r) => sameAddress(r.address, address));
  const tentative = { address, transport: { kind: 'default' as const } };
  if (!duplicate) txn.rcpts.push(tentative);
  txn.currentRcpt = address;
  const result = await decideStage(p.front, state, p.log, 'rcpt', R.rcptOk);
  if (result.applied.accept) txx.clientRcpts++;
  else {
    if (!duplicate) txn.rcpts = txn.rcpts.filter((r) => r !== tentative);
    txn.currentRcpt = previous;
    p.log.debug({ rcpt: addressText(address) }, 'recipient refused');
  }
  await p.replyApplied(result.applied);
}

async function data(p: SmtpProtocol, args: string): Promise<void> {
  const { state } = p;
  if (args.trim() !== '') {
    await p.wire.reply(R.badArguments('Syntax: DATA'));
    return;
  }
  if (state.txn === null) {
    await p.wire.reply(R.badSequence);
    return;
  }
  if (state.txn.rcpts.length === 0) {
    await p.wire.reply(R.noValidRcpts);
    return;
  }
  p.wire.markAwaited();
  await receiveMessage(p);
}

async function rset(p: SmtpProtocol, args: string): Promise<void> {
  if (args.trim() !== '') {
    await p.wire.reply(R.badArguments('Syntax: RSET'));
    return;
  }
  p.state.endTransaction();
  await p.wire.reply(R.ok);
}

async function noop(p: SmtpProtocol): Promise<void> {
  await p.wire.reply(R.ok);
}

async function quit(p: SmtpProtocol): Promise<void> {
  await p.wire.reply(R.quit, { close: true });
}

async function help(p: SmtpProtocol): Promise<void> {
  await p.wire.reply(R.help);
}

async function starttls(p: SmtpProtocol, args: string): Promise<void> {
  const { state } = p;
  p.wire.markAwaited();
  if (args.trim() !== '') {
    await p.wire.reply(R.badArguments('Syntax: STARTTLS'));
    return;
  }
  if (state.session.tls !== null) {
    await p.wire.reply(R.tlsActive);
    return;
  }
  if (!p.front.tlsAvailable()) {
    await p.wire.reply(R.tlsUnavailable);
    return;
  }
  if (state.txn !== null) {
    await p.wire.reply(R.badSequence);
    return;
  }
  await p.wire.reply(R.tlsReady);
  if (p.wire.gone) return;
  p.wire.startTls(() => {
    const tls = p.wire.tlsInfo();
    // Back to the state right after connect; connect rules do not run again (SPEC §4.3).
    state.resetAfterTls({ tls, serverName: p.serverNameFor(tls?.servername) });
    p.sasl = null;
    p.log.info({ protocol: tls?.protocol, cipher: tls?.cipher }, 'TLS started');
  });
}

async function auth(p: SmtpProtocol, args: string): Promise<void> {
  await handleAuth(p, args);
}

/** VRFY EXPN BDAT ETRN TURN XCLIENT XFORWARD (SPEC §4.5): none exists here. */
async function notImplemented(p: SmtpProtocol): Promise<void> {
  await p.wire.reply(R.notImplemented);
}

/** The command table: every verb this server answers. */
const COMMANDS: Record<string, Handler> = {
  HELO: helo,
  EHLO: helo,
  MAIL: mail,
  RCPT: rcpt,
  DATA: data,
  RSET: rset,
  NOOP: noop,
  QUIT: quit,
  HELP: help,
  STARTTLS: starttls,
  AUTH: auth,
  VRFY: notImplemented,
  EXPN: notImplemented,
  BDAT: notImplemented,
  ETRN: notImplemented,
  TURN: notImplemented,
  XCLIENT: notImplemented,
  XFORWARD: notImplemented,
};
