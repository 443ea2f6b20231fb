// `mta policy-server` behind a real Postfix (check_policy_service in
// smtpd_recipient_restrictions, a private instance from test/helpers/postfix.ts):
// the doe-family policy's replies, greylisting, and a policy error.
// Postfix evaluates its restrictions at RCPT (smtpd_delay_reject), so a
// sender refused at MAIL under `mta run` is refused at RCPT here, with the
// same code.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { postfixUnavailable } from '../helpers/postfix.js';
import { onConfig, startBehindPostfix, throughPostfix, type BehindPostfix } from '../milter/front-fixture.js';

const skip = postfixUnavailable() ?? false;

describe('mta policy-server with Postfix (check_policy_service)', { skip }, () => {
  let s: BehindPostfix;
  before(async () => {
    s = await startBehindPostfix('policy-server', { copyFrom: 'examples/doe-family' });
  });
  after(() => s?.stop());

  it('accepts mail from outside to a local user', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'a@example.org', to: ['jane@doe-family.com'], message: 'Subject: hi\r\n\r\nhi\r\n' });
    assert.match(r.rcpts[0]!, /^250 /);
    assert.match(r.data!, /^250 /);
    await s.sink.waitForMessages(1, 20_000);
  });

  it('refuses relaying from outside with 554 5.7.1 and the policy text', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'a@example.org', to: ['x@example.net'] });
    assert.match(r.rcpts[0]!, /^554 5\.7\.1 .*Relay access denied/);
  });

  it('refuses a local sender from outside with 554 5.7.1: the first request of the instance runs the mail stage too', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'jane@doe-family.com', to: ['john@doe-family.com'] });
    assert.match(r.mail, /^250 /, 'Postfix delays the restriction to RCPT');
    assert.match(r.rcpts[0]!, /^554 5\.7\.1 /);
  });

  it('lets an authenticated client relay (sasl_username)', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', login: 'jane', from: 'jane@doe-family.com', to: ['friend@example.net'] });
    assert.match(r.rcpts[0]!, /^250 /);
  });

  it('logs the decisions with rule and file:line', () => {
    const d = s.front.logs.find((l) => l.stage === 'rcpt' && l.status === 'reject');
    assert.ok(d);
    assert.equal(d.rule, 'relay rcpt');
    assert.match(String(d.at), /main\.vsl:\d+:\d+$/);
  });
});

const GREYLIST_AND_BROKEN = `
${onConfig('example.org')}
#{
  rcpt: [
    rule "broken store" || if ctx::rcpt() == address("broken@example.org") { throw "policy store down"; } else { next() },
    rule "greylist" || greylist::check(#{ delay: "1s", retry_window: "30s", ttl: "30s" }),
  ],
}
`;

describe('mta policy-server greylists and fails closed through Postfix', { skip }, () => {
  let s: BehindPostfix;
  before(async () => {
    s = await startBehindPostfix('policy-server', { files: { 'main.vsl': GREYLIST_AND_BROKEN } });
  });
  after(() => s?.stop());

  it('defers a first attempt and accepts the retry after the delay', async () => {
    const d = { client: '203.0.113.20', from: 'a@remote.example', to: ['bob@example.org'] };
    const first = await throughPostfix(s.postfix.port, d);
    assert.match(first.rcpts[0]!, /^45\d 4\.7\.1 .*Greylisted/);
    await new Promise((r) => setTimeout(r, 1200));
    const retry = await throughPostfix(s.postfix.port, d);
    assert.match(retry.rcpts[0]!, /^250 /);
  });

  it('answers a rule error with a temporary failure, never an accept', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.21', from: 'a@remote.example', to: ['broken@example.org'] });
    assert.match(r.rcpts[0]!, /^4\d\d 4\.\d\.\d /);
    assert.ok(s.front.logs.some((l) => /rule "broken store" failed at rcpt: .*policy store down/.test(String(l.msg))));
  });
});
