// A next-hop SMTP server for tests, on the smtp-server package, listening on
// 127.0.0.1 (or another loopback address) with an ephemeral port. It
// records every message it accepts and answers MAIL, RCPT and end-of-data
// as a script says, so tests can play "451 twice then 250", "550",
// "452 after N recipients" or "never answer".
//
//   const sink = await startSmtpSink({
//     script: { data: replySequence({ code: 451, text: '4.3.0 try later' }, { code: 451, text: '4.3.0 try later' }, 'accept') },
//   });
//   ... deliver to 127.0.0.1:sink.port ...
//   await sink.waitForMessages(1);
//   assert.equal(sink.messages[0].rcptTo[0], 'bob@example.test');
//   await sink.close();
//
// A reply is `{ code, text }`; put the enhanced status in the text
// ("5.1.1 No such user"), the server adds nothing. A step can also be
// 'accept' (the normal 250), 'accept-close' (250, then drop the connection
// as an idle-connection reaper would), 'hang' (never answer: the client must
// time out) or 'close' (drop the connection instead of answering). For behaviour smtp-server cannot
// produce (garbage instead of a greeting, a silent listener), pass `raw`: a
// function that gets each accepted socket of a plain TCP server instead.

import net from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

export interface SinkReply {
  code: number;
  text: string;
}

export type SinkStep = SinkReply | 'accept' | 'accept-close' | 'hang' | 'close';

export interface SinkContext {
  /** 1-based number of the connection. */
  connection: number;
  /** 1-based number of the transaction (MAIL command) over the sink's life. */
  transaction: number;
  /** 1-based number of the end-of-data reply over the sink's life (data only). */
  dataAttempt: number;
  /** 0-based index of the recipient within its transaction (rcpt only). */
  rcptIndex: number;
  /** The address of the MAIL or RCPT command. */
  address: string;
  mailFrom: string;
  rcptTo: string[];
}

export interface SinkScript {
  mail?(ctx: SinkContext): SinkStep | undefined;
  rcpt?(ctx: SinkContext): SinkStep | undefined;
  data?(ctx: SinkContext & { message: Buffer }): SinkStep | undefined;
}

export interface ReceivedMessage {
  mailFrom: string;
  rcptTo: string[];
  data: Buffer;
  connection: number;
  transaction: number;
  /** The session was under TLS (STARTTLS or implicit). */
  secure: boolean;
}

export interface SmtpSink {
  host: string;
  port: number;
  /** "host:port", usable as a forward target. */
  address: string;
  messages: ReceivedMessage[];
  /** Connections accepted so far. */
  connections: () => number;
  /** Transactions (MAIL commands) seen so far. */
  transactions: () => number;
  /** End-of-data replies given so far (accepted or not). */
  dataAttempts: () => number;
  /** Resolves once `n` messages were accepted; rejects after `timeoutMs`. */
  waitForMessages(n: number, timeoutMs?: number): Promise<void>;
  setScript(script: SinkScript): void;
  close(): Promise<void>;
}

export interface SinkOptions {
  host?: string;
  /** Fixed port (default 0: ephemeral). */
  port?: number;
  script?: SinkScript;
  /** Offer STARTTLS (default false), with `tls` or smtp-server's built-in test certificate. */
  starttls?: boolean;
  /** TLS from the first byte (smtps), with `tls`. */
  secure?: boolean;
  /** Certificate and key (PEM) for STARTTLS or implicit TLS. */
  tls?: { key: string; cert: string };
  /** Require AUTH with these credentials. */
  auth?: { user: string; pass: string };
  /** Replace the SMTP server by a raw TCP handler. */
  raw?: (socket: net.Socket) => void;
}

/** A step function answering the n-th call with the n-th step (the last one repeating). */
export function replySequence(...steps: SinkStep[]): (ctx: SinkContext) => SinkStep {
  let i = 0;
  return () => steps[Math.min(i++, steps.length - 1)]!;
}

function smtpError(r: SinkReply): Error {
  return Object.assign(new Error(r.text), { responseCode: r.code });
}

interface SessionState {
  connection: number;
  socket: net.Socket | null;
}

export async function startSmtpSink(opts: SinkOptions = {}): Promise<SmtpSink> {
  const host = opts.host ?? '127.0.0.1';
  let script: SinkScript = opts.script ?? {};
  const messages: ReceivedMessage[] = [];
  const waiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const sessions = new Map<string, SessionState>();
  let connections = 0;
  let transactions = 0;
  let dataAttempts = 0;
  const currentTxn = new Map<string, number>();

  const notify = () => {
    for (const w of waiters.splice(0)) w();
  };

  // Applies a step to an smtp-server callback: 'hang' never calls it.
  const answer = (step: SinkStep | undefined, session: SMTPServerSession, cb: (err?: Error | null) => void) => {
    if (step === undefined || step === 'accept') return cb();
    if (step === 'accept-close') {
      cb();
      setImmediate(() => sessions.get(session.id)?.socket?.destroy());
      return;
    }
    if (step === 'hang') return;
    if (step === 'close') {
      sessions.get(session.id)?.socket?.destroy();
      return;
    }
    cb(smtpError(step));
  };

  let listener: net.Server;
  let closeServer: () => Promise<void> = () => new Promise<void>((resolve) => listener.close(() => resolve()));
  if (opts.raw) {
    listener = net.createServer((socket) => {
      connections++;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      opts.raw!(socket);
    });
  } else {
    const server = new SMTPServer({
      secure: opts.secure === true,
      ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
      logger: false,
      hideSTARTTLS: !opts.starttls,
      hideENHANCEDSTATUSCODES: true,
      authOptional: !opts.auth,
      disabledCommands: opts.auth ? [] : ['AUTH'],
      allowInsecureAuth: true,
      size: 0,
      closeTimeout: 100,
      onConnect(session, cb) {
        connections++;
        sessions.set(session.id, { connection: connections, socket: null });
        cb();
      },
      onAuth(auth, _session, cb) {
        if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) cb(null, { user: auth.username });
        else cb(smtpError({ code: 535, text: '5.7.8 Authentication credentials invalid' }));
      },
      onMailFrom(address: SMTPServerAddress, session, cb) {
        transactions++;
        currentTxn.set(session.id, transactions);
        const ctx = context(session, address.address, 0);
        answer(script.mail?.(ctx), session, cb);
      },
      onRcptTo(address: SMTPServerAddress, session, cb) {
        const ctx = context(session, address.address, session.envelope.rcptTo.length);
        answer(script.rcpt?.(ctx), session, cb);
      },
      onData(stream: SMTPServerDataStream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          dataAttempts++;
          const data = Buffer.concat(chunks);
          const ctx = { ...context(session, '', 0), message: data };
          const step = script.data?.(ctx);
          if (step === undefined || step === 'accept' || step === 'accept-close') {
            messages.push({
              mailFrom: ctx.mailFrom,
              rcptTo: ctx.rcptTo,
              data,
              connection: ctx.connection,
              transaction: ctx.transaction,
              secure: session.secure,
            });
            notify();
          }
          answer(step, session, cb);
        });
      },
      onClose(session) {
        sessions.delete(session.id);
        currentTxn.delete(session.id);
      },
    });
    server.on('error', () => undefined);
    // Keep the sockets so close() can drop hung connections, and so 'close' steps can.
    const inner = (server as unknown as { server: net.Server }).server;
    inner.on('connection', (socket: net.Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // The connection number is assigned in onConnect; remember the socket by remote port.
      pendingSockets.push(socket);
    });
    listener = inner;
    closeServer = () => new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // smtp-server does not hand sockets to handlers: pair each session with
  // its socket by the client's port.
  const pendingSockets: net.Socket[] = [];
  function context(session: SMTPServerSession, address: string, rcptIndex: number): SinkContext {
    const st = sessions.get(session.id);
    if (st && !st.socket) {
      const i = pendingSockets.findIndex((s) => s.remotePort === session.remotePort);
      if (i >= 0) st.socket = pendingSockets.splice(i, 1)[0]!;
    }
    return {
      connection: st?.connection ?? 0,
      transaction: currentTxn.get(session.id) ?? 0,
      dataAttempt: dataAttempts,
      rcptIndex,
      address,
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
    };
  }

  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(opts.port ?? 0, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const port = (listener.address() as net.AddressInfo).port;

  return {
    host,
    port,
    address: `${host}:${port}`,
    messages,
    connections: () => connections,
    transactions: () => transactions,
    dataAttempts: () => dataAttempts,
    setScript(s: SinkScript) {
      script = s;
    },
    waitForMessages(n: number, timeoutMs = 10_000) {
      if (messages.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sink: ${messages.length} of ${n} messages after ${timeoutMs} ms`)), timeoutMs);
        const check = () => {
          if (messages.length >= n) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        waiters.push(check);
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await closeServer();
    },
  };
}
