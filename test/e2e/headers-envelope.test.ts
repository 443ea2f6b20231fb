// Header and envelope edits made by rules reach the spool (issue "Core
// built-ins", must-show 6): msg::append_header at rcpt lands in the spooled
// message below Received:, envelop::rm_rcpt at rcpt and at preq takes the
// recipient out of the spooled envelope.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { headerFields, headerValues, queuedId, recipientsOf, sampleMessage, sendData, startTestServer, transaction, type TestServer } from '../helpers/server.js';

const POLICY = `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = [];
  config
}

#{
  rcpt: [
    action "note each recipient" || msg::append_header("X-Seen-Rcpt", ctx::rcpt().to_string()),
    // When "last" arrives, take "early" (accepted before) out again.
    action "drop early" || { if ctx::rcpt().local_part == "last" { envelop::rm_rcpt(address("early@test.example")); } },
    rule "local only" || check_rcpt_relay([]),
  ],
  preq: [
    action "drop at preq" || { envelop::rm_rcpt("preq-drop@test.example"); },
    action "drop all" || { if msg::get_header("Subject") == "drop everyone" { for r in ctx::rcpt_list() { envelop::rm_rcpt(r); } } },
    action "mark at preq" || msg::append_header("X-Preq", "checked"),
  ],
}
`;

describe('header and envelope edits through the real server', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ files: { 'main.vsl': POLICY } });
  });
  after(() => s?.stop());

  test('headers appended at rcpt are in the spooled message below Received:, in call order; rm_rcpt at rcpt and preq removes recipients from the envelope', async () => {
    const c = await s.client();
    const rcpts = ['early@test.example', 'preq-drop@test.example', 'keep@test.example', 'last@test.example'];
    const replies = await transaction(c, 'a@example.org', [...rcpts, 'x@example.net']);
    // Every RCPT is answered 250 (removals happen behind the client's back), the relay attempt is refused.
    assert.deepEqual(replies.slice(2).map((r) => r.code), [250, 250, 250, 250, 554]);
    const { end } = await sendData(c, sampleMessage('a@example.org', 'keep@test.example'));
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();

    const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
    assert.deepEqual(recipientsOf(m), ['keep@test.example', 'last@test.example']);
    assert.deepEqual(headerValues(m.eml, 'X-Seen-Rcpt'), rcpts, 'one header per accepted recipient, in order');
    const names = headerFields(m.eml).map(([n]) => n);
    assert.equal(names[0], 'Received');
    assert.deepEqual(names.slice(1, 5), ['X-Seen-Rcpt', 'X-Seen-Rcpt', 'X-Seen-Rcpt', 'X-Seen-Rcpt'], 'pending headers come right below Received:');
    assert.ok(names.indexOf('X-Seen-Rcpt') < names.indexOf('From'), 'and above the message\'s own headers');
    assert.equal(names[names.length - 1], 'X-Preq', 'a header appended at preq goes to the bottom of the header block');
    assert.ok(m.eml.includes('\r\n\r\nHello from the end-to-end tests.'), 'the body is untouched');
  });

  test('a message whose recipients are all removed at preq is answered 250 but never queued', async () => {
    const before = (await s.spooled()).length;
    const c = await s.client();
    await transaction(c, 'a@example.org', ['one@test.example', 'two@test.example']);
    const { end } = await sendData(c, sampleMessage('a@example.org', 'one@test.example', 'drop everyone'));
    assert.equal(end.code, 250);
    c.destroy();
    assert.equal((await s.spooled()).length, before);
  });
});
