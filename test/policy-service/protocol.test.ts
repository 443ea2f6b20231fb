// `mta policy-server` on the wire, with a raw client playing Postfix:
// the answers per protocol_state, instances sharing their session, and
// what malformed or oversized requests get.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { onConfig, startTestFront, type TestFront } from '../milter/front-fixture.js';

const POLICY = `
${onConfig('example.org')}
#{
  connect: [
    rule "trusted" || if ctx::client_ip() == ip4("192.0.2.1") { faccept() } else { next() },
  ],
  mail: [
    rule "spammer" || if ctx::mail_from() == address("spam@bad.example") { deny("554 5.7.1 go away") } else { next() },
  ],
  rcpt: [
    rule "held" || if ctx::rcpt() == address("held@example.org") { quarantine("review") } else { next() },
    rule "welcome" || if ctx::rcpt() == address("vip@example.org") { accept() } else { next() },
    rule "later" || if ctx::rcpt() == address("later@example.org") { reject("450 4.2.0 mailbox busy") } else { next() },
    rule "local only" || if ctx::rcpt().domain == "example.org" { next() } else { reject("554 5.7.1 Relay access denied") },
  ],
}
`;

/** A connection that sends raw request text and reads `action=` answers. */
class PolicyClient {
  private buf = '';
  private waiters: Array<(a: string | null) => void> = [];
  private ended = false;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n\n'); i >= 0; i = this.buf.indexOf('\n\n')) {
        const a = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        this.waiters.shift()?.(a);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  static connect(port: number): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new PolicyClient(s)));
      s.once('error', reject);
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** The next answer; null when the server closed the connection. */
  next(timeoutMs = 5000): Promise<string | null> {
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer')), timeoutMs);
      this.waiters.push((a) => {
        clearTimeout(timer);
        resolve(a);
      });
    });
  }

  async ask(attrs: Record<string, string>): Promise<string | null> {
    this.write(Object.entries(attrs).map(([k, v]) => `${k}=${v}\n`).join('') + '\n');
    return this.next();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

let instances = 0;
/** A RCPT request as Postfix sends it from smtpd_recipient_restrictions. */
function rcptRequest(o: { client?: string; sender?: string; recipient: string; instance?: string; sasl?: string }): Record<string, string> {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: o.client ?? '203.0.113.7',
    client_name: 'unknown',
    helo_name: 'client.example',
    sender: o.sender ?? 'a@remote.example',
    recipient: o.recipient,
    instance: o.instance ?? `i${++instances}`,
    sasl_username: o.sasl ?? '',
  };
}

describe('mta policy-server protocol', () => {
  let front: TestFront;

  before(async () => {
    front = await startTestFront('policy-server', { files: { 'main.vsl': POLICY } });
  });
  after(async () => {
    await front?.stop();
  });

  it('maps next, accept, quarantine and refusals to DUNNO, OK, HOLD, the reply and DEFER_IF_PERMIT', async () => {
    const c = await PolicyClient.connect(front.port);
    assert.equal(await c.ask(rcptRequest({ recipient: 'bob@example.org' })), 'action=DUNNO');
    assert.equal(await c.ask(rcptRequest({ recipient: 'vip@example.org' })), 'action=OK');
    assert.equal(await c.ask(rcptRequest({ recipient: 'held@example.org' })), 'action=HOLD review');
    assert.equal(await c.ask(rcptRequest({ recipient: 'x@example.net' })), 'action=554 5.7.1 Relay access denied');
    assert.equal(await c.ask(rcptRequest({ recipient: 'later@example.org' })), 'action=DEFER_IF_PERMIT 4.2.0 mailbox busy');
    c.destroy();
  });

  it('runs the stages before RCPT on the first request of an instance: a connect faccept is remembered, the relay guard still applies', async () => {
    const c = await PolicyClient.connect(front.port);
    assert.equal(await c.ask(rcptRequest({ client: '192.0.2.1', recipient: 'bob@example.org', instance: 'trusted-1' })), 'action=OK');
    assert.equal(await c.ask(rcptRequest({ client: '192.0.2.1', recipient: 'x@example.net', instance: 'trusted-1' })), 'action=554 5.7.1 Relay access denied');
    c.destroy();
  });

  it('keeps a deny of the mail stage for every later request of the instance', async () => {
    const c = await PolicyClient.connect(front.port);
    const first = rcptRequest({ sender: 'spam@bad.example', recipient: 'bob@example.org', instance: 'deny-1' });
    assert.equal(await c.ask(first), 'action=554 5.7.1 go away');
    assert.equal(await c.ask({ ...first, recipient: 'vip@example.org' }), 'action=554 5.7.1 go away');
    c.destroy();
  });

  it('ignores unknown attributes', async () => {
    const c = await PolicyClient.connect(front.port);
    assert.equal(await c.ask({ ...rcptRequest({ recipient: 'bob@example.org' }), future_attribute: 'x', ccert_subject: '' }), 'action=DUNNO');
    c.destroy();
  });

  it('answers a malformed request or an unknown request type with DEFER_IF_PERMIT and goes on', async () => {
    const c = await PolicyClient.connect(front.port);
    c.write('request=smtpd_access_policy\nthis line has no equals sign\n\n');
    assert.match((await c.next())!, /^action=DEFER_IF_PERMIT 4\.3\.0 /);
    assert.match((await c.ask({ request: 'something_else', protocol_state: 'RCPT' }))!, /^action=DEFER_IF_PERMIT /);
    assert.match((await c.ask({ ...rcptRequest({ recipient: 'bob@example.org' }), protocol_state: 'BDAT?' }))!, /^action=DEFER_IF_PERMIT /);
    assert.equal(await c.ask(rcptRequest({ recipient: 'bob@example.org' })), 'action=DUNNO');
    c.destroy();
  });

  it('closes a connection whose request is too large or never ends, and serves the others', async () => {
    const big = await PolicyClient.connect(front.port);
    big.write(`request=smtpd_access_policy\nsender=${'a'.repeat(100_000)}`);
    assert.equal(await big.next(), null, 'closed without an answer');

    const unfinished = await PolicyClient.connect(front.port);
    unfinished.write('request=smtpd_access_policy\nprotocol_state=RCPT\n');
    unfinished.destroy();

    const c = await PolicyClient.connect(front.port);
    assert.equal(await c.ask(rcptRequest({ recipient: 'bob@example.org' })), 'action=DUNNO');
    c.destroy();
  });
});
