// SPEC §5.2 end to end: every (status × stage) cell over a real socket, with
// the exact reply line, whether the connection closed, and whether the
// command took effect (greeting stands, HELO recorded, AUTH succeeded,
// transaction started, recipient added, message queued).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Stage, Verdict } from '../../src/mail/types.js';
import { accept, deny, faccept, info, next, quarantine, reject, ruleError } from '../helpers/fake-runner.js';
import type { SmtpClient } from '../helpers/smtp-client.js';
import { type Harness, withFront } from '../helpers/smtp-front.js';

const PLAIN_OK = Buffer.from('\0alice\0secret').toString('base64');

type Row = { status: string; verdict: Verdict; reply: string; close: boolean; effect: boolean; errorStatus?: 'tempfail' | 'deny' };

/** Drives a session up to `stage`; returns the reply of the command that ran it. */
async function reach(h: Harness, c: SmtpClient | null, stage: Stage): Promise<{ c: SmtpClient; reply: string }> {
  if (stage === 'connect') {
    const client = await h.connect();
    return { c: client, reply: (await client.greeting()).last };
  }
  const client = c!;
  if (stage === 'helo') return { c: client, reply: (await client.command('EHLO client.example')).lines[0]! };
  assert.equal((await client.ehlo()).code, 250);
  if (stage === 'authenticate') return { c: client, reply: (await client.command(`AUTH PLAIN ${PLAIN_OK}`)).last };
  if (stage === 'mail') return { c: client, reply: (await client.command('MAIL FROM:<sender@remote.example>')).last };
  assert.equal((await client.command('MAIL FROM:<sender@remote.example>')).code, 250);
  if (stage === 'rcpt') return { c: client, reply: (await client.command('RCPT TO:<user@test.example>')).last };
  assert.equal((await client.command('RCPT TO:<user@test.example>')).code, 250);
  assert.equal((await client.command('DATA')).code, 354);
  return { c: client, reply: (await client.data('Subject: test\r\n\r\nbody\r\n')).last };
}

/** Whether the stage's command took effect, checked by what the session does next. */
async function tookEffect(h: Harness, c: SmtpClient, stage: Stage): Promise<boolean> {
  switch (stage) {
    case 'connect':
      return (await c.ehlo()).code === 250;
    case 'helo':
      // A refused HELO is not recorded: MAIL gets 503.
      return (await c.command('MAIL FROM:<sender@remote.example>')).code === 250;
    case 'authenticate':
      await c.command('MAIL FROM:<sender@remote.example>');
      return h.runner.callsOf('mail')[0]?.session.auth?.authid === 'alice';
    case 'mail':
      return (await c.command('RCPT TO:<user@test.example>')).code === 250;
    case 'rcpt':
      return (await c.command('DATA')).code === 354;
    case 'preq':
      return h.sink.stored.length === 1;
    default:
      throw new Error(`no effect check for ${stage}`);
  }
}

const ok = { connect: '220 mx.test.example Service ready', helo: '250-mx.test.example', authenticate: '235 2.7.0 Authentication succeeded', mail: '250 2.1.0 Ok', rcpt: '250 2.1.5 Ok' } as const;
const auth535 = '535 5.7.8 Authentication credentials invalid';
const denyDefault = '554 5.7.1 permanent problems with the remote server';
const tempfail = '451 4.3.0 Temporary local problem, try again later';

const TABLE: Record<'connect' | 'helo' | 'authenticate' | 'mail' | 'rcpt' | 'preq', Row[]> = {
  connect: [
    { status: 'next', verdict: next(), reply: ok.connect, close: false, effect: true },
    { status: 'accept(c)', verdict: accept('220 welcome to the test'), reply: '220 welcome to the test', close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept('220 trusted'), reply: '220 trusted', close: false, effect: true },
    { status: 'deny(c)', verdict: deny('554 5.7.1 go away'), reply: '554 5.7.1 go away', close: true, effect: false },
    { status: 'reject(c)', verdict: reject('554 5.7.1 not today'), reply: '554 5.7.1 not today', close: true, effect: false },
    { status: 'info(c)', verdict: info('421 4.7.0 later'), reply: '421 4.7.0 later', close: true, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: ok.connect, close: false, effect: true },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: '421 4.3.0 Temporary local problem, try again later', close: true, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: denyDefault, close: true, effect: false, errorStatus: 'deny' },
  ],
  helo: [
    { status: 'next', verdict: next(), reply: ok.helo, close: false, effect: true },
    { status: 'accept(c)', verdict: accept('250 hello friend'), reply: '250-hello friend', close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept(), reply: ok.helo, close: false, effect: true },
    { status: 'deny(c)', verdict: deny('550 5.7.1 bad helo'), reply: '550 5.7.1 bad helo', close: true, effect: false },
    { status: 'reject(c)', verdict: reject('550 5.7.1 bad helo'), reply: '550 5.7.1 bad helo', close: false, effect: false },
    { status: 'info(c)', verdict: info('504 5.5.2 need a fqdn'), reply: '504 5.5.2 need a fqdn', close: false, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: ok.helo, close: false, effect: true },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: tempfail, close: false, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: denyDefault, close: true, effect: false, errorStatus: 'deny' },
  ],
  authenticate: [
    { status: 'next', verdict: next(), reply: auth535, close: false, effect: false },
    { status: 'accept(c)', verdict: accept('235 2.7.0 welcome back'), reply: '235 2.7.0 welcome back', close: false, effect: true },
    { status: 'accept()', verdict: accept(), reply: ok.authenticate, close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept(), reply: auth535, close: false, effect: false },
    { status: 'deny(c)', verdict: deny('535 5.7.8 banned'), reply: '535 5.7.8 banned', close: true, effect: false },
    { status: 'deny()', verdict: deny(), reply: auth535, close: true, effect: false },
    { status: 'reject(c)', verdict: reject('535 5.7.8 try again'), reply: '535 5.7.8 try again', close: false, effect: false },
    { status: 'info(c)', verdict: info('454 4.7.0 later'), reply: '454 4.7.0 later', close: false, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: auth535, close: false, effect: false },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: '454 4.7.0 Temporary authentication failure', close: false, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: auth535, close: true, effect: false, errorStatus: 'deny' },
  ],
  mail: [
    { status: 'next', verdict: next(), reply: ok.mail, close: false, effect: true },
    { status: 'accept(c)', verdict: accept('250 2.1.0 sender fine'), reply: '250 2.1.0 sender fine', close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept(), reply: ok.mail, close: false, effect: true },
    { status: 'deny(c)', verdict: deny('554 5.7.1 Relay access denied'), reply: '554 5.7.1 Relay access denied', close: true, effect: false },
    { status: 'reject(c)', verdict: reject('550 5.7.1 bad sender'), reply: '550 5.7.1 bad sender', close: false, effect: false },
    { status: 'reject()', verdict: reject(), reply: '550 5.7.1 Command rejected by policy', close: false, effect: false },
    { status: 'info(c)', verdict: info('451 4.7.1 later'), reply: '451 4.7.1 later', close: false, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: ok.mail, close: false, effect: true },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: tempfail, close: false, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: denyDefault, close: true, effect: false, errorStatus: 'deny' },
  ],
  rcpt: [
    { status: 'next', verdict: next(), reply: ok.rcpt, close: false, effect: true },
    { status: 'accept(c)', verdict: accept('250 2.1.5 welcome'), reply: '250 2.1.5 welcome', close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept(), reply: ok.rcpt, close: false, effect: true },
    { status: 'deny(c)', verdict: deny('550 5.1.1 spamtrap'), reply: '550 5.1.1 spamtrap', close: true, effect: false },
    { status: 'reject(c)', verdict: reject('550 5.1.1 unknown user'), reply: '550 5.1.1 unknown user', close: false, effect: false },
    { status: 'info(c)', verdict: info('451 4.7.1 greylisted'), reply: '451 4.7.1 greylisted', close: false, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: ok.rcpt, close: false, effect: true },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: tempfail, close: false, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: denyDefault, close: true, effect: false, errorStatus: 'deny' },
  ],
  preq: [
    { status: 'next', verdict: next(), reply: '250 2.0.0 Ok: queued as ', close: false, effect: true },
    { status: 'accept(c)', verdict: accept('250 2.0.0 thanks'), reply: '250 2.0.0 thanks', close: false, effect: true },
    { status: 'faccept(c)', verdict: faccept(), reply: '250 2.0.0 Ok: queued as ', close: false, effect: true },
    { status: 'deny(c)', verdict: deny('550 5.7.1 virus found'), reply: '550 5.7.1 virus found', close: true, effect: false },
    { status: 'reject(c)', verdict: reject('550 5.7.1 spam'), reply: '550 5.7.1 spam', close: false, effect: false },
    { status: 'info(c)', verdict: info('451 4.7.1 later'), reply: '451 4.7.1 later', close: false, effect: false },
    { status: 'quarantine(q)', verdict: quarantine('hold'), reply: '250 2.0.0 Ok: queued as ', close: false, effect: true },
    { status: 'rule error (tempfail)', verdict: ruleError(), reply: tempfail, close: false, effect: false },
    { status: 'rule error (deny)', verdict: ruleError(), reply: denyDefault, close: true, effect: false, errorStatus: 'deny' },
  ],
};

for (const [stage, rows] of Object.entries(TABLE) as Array<[keyof typeof TABLE, Row[]]>) {
  describe(`${stage} stage over SMTP`, () => {
    for (const row of rows) {
      const what = `${row.reply.trim()}${row.close ? ' and close' : ''}${row.effect ? '' : ', no effect'}`;
      test(`${row.status} at ${stage}: ${what}`, async () => {
        await withFront({
          script: { [stage]: row.verdict },
          config: (c) => {
            c.server.auth.allow_plaintext = true;
            if (row.errorStatus) c.vsl.error_status = row.errorStatus;
          },
        }, async (h) => {
          let client: SmtpClient | null = null;
          if (stage !== 'connect') client = await h.client();
          const { c, reply } = await reach(h, client, stage);
          if (row.reply.endsWith(' ')) assert.ok(reply.startsWith(row.reply), `${reply} starts with ${row.reply}`);
          else assert.equal(reply, row.reply);
          if (row.close) {
            assert.equal(await c.closedWithin(2000), true, 'the server closed the connection');
          } else {
            assert.equal(await tookEffect(h, c, stage), row.effect, 'effect');
            assert.equal(c.closed, false, 'the session continues');
          }
          if (stage === 'preq' && row.status === 'quarantine(q)') assert.equal(h.sink.stored[0]?.quarantine, 'hold');
          if (row.close && stage === 'preq') assert.equal(h.sink.stored.length, 0, 'discarded');
          c.destroy();
        });
      });
    }
  });
}
