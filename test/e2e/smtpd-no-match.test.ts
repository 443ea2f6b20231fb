// SPEC §8.3: a recipient no smtpd_check_rules line matches is decided by the
// relay guard, so a rules file without a final catch-all line cannot make the
// server an open relay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from '../helpers/server.js';

const RULES = [
  '# no final noto:ALL:ALL:ALL line on purpose',
  'noto:ALL:ALL:blocked@example.org:550 blocked here',
  '',
].join('\n');

const MAIN = `
fn on_config(config) {
  config.server.domain = "example.org";
  config.server.relay_networks = [];
  config
}
#{ rcpt: [ rule "rules file" || smtpd_check_rules("rules") ] }
`;

test('a recipient no rules line matches is refused with 554 5.7.1 when foreign, accepted when local', async () => {
  const s = await startTestServer({ files: { 'main.vsl': MAIN, rules: RULES } });
  try {
    const c = await s.client();
    assert.match((await c.command('EHLO client.test')).lines[0]!, /^250/);
    assert.match((await c.command('MAIL FROM:<a@sender.test>')).lines[0]!, /^250/);
    assert.equal((await c.command('RCPT TO:<x@foreign.test>')).lines[0], '554 5.7.1 Relay access denied');
    assert.equal((await c.command('RCPT TO:<blocked@example.org>')).lines[0], '550 blocked here');
    assert.match((await c.command('RCPT TO:<jane@example.org>')).lines[0]!, /^250 2\.1\.5/);
    await c.quit();
  } finally {
    await s.stop();
  }
});
