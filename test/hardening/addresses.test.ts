// SPEC §4.4 address classes over a socket against the whole server (real
// engine, real spool), each with the exact reply (issue "Hardening",
// must-show 2); and what rules and the spool see: the canonical form, with
// the raw path kept for logs. test/vsl/address.test.ts covers the parser
// function by function; this is the same table end to end.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SmtpClient } from '../helpers/smtp-client.js';
import { DOE_FAMILY, policyText, startFullServer, type FullServer } from './full-server.js';

const RELAY_DENIED = '554 5.7.1 Relay access denied';
const BAD_RCPT = '501 5.1.3 Bad recipient address syntax';
const BAD_SENDER = '501 5.1.7 Bad sender address syntax';
const NON_ASCII = '553 5.6.7 Non-ASCII address requires SMTPUTF8';
const RCPT_OK = '250 2.1.5 Ok';
const MAIL_OK = '250 2.1.0 Ok';

// Many refusals in one session: keep error counting out of the way.
const PATIENT = ['server.smtp.error.delay="0s"', 'server.smtp.error.soft_count=1000', 'server.smtp.error.hard_count=1000'];

/** RSET, a MAIL from an outside sender, then the RCPT; returns the RCPT reply. */
async function rcpt(c: SmtpClient, path: string, smtputf8 = false): Promise<string> {
  await c.command('RSET');
  assert.equal((await c.command(`MAIL FROM:<alice@example.net>${smtputf8 ? ' SMTPUTF8' : ''}`)).last, MAIL_OK);
  return (await c.command(`RCPT TO:${path}`)).last;
}

async function mail(c: SmtpClient, arg: string): Promise<string> {
  await c.command('RSET');
  return (await c.command(`MAIL FROM:${arg}`)).last;
}

describe('SPEC §4.4 over a socket, doe-family example, outside client', () => {
  let s: FullServer;
  let c: SmtpClient;
  before(async () => {
    s = await startFullServer({ policy: DOE_FAMILY(), set: PATIENT });
    c = await s.client();
    await c.ehlo('client.example.net');
  });
  after(async () => {
    c?.destroy();
    await s?.stop();
  });

  const table: Array<[string, string, string, boolean?]> = [
    // [class, RCPT path, exact reply, SMTPUTF8 on MAIL]
    ['source route to a local mailbox: dropped, accepted', '<@relay.example,@other.example:jdoe@doe-family.com>', RCPT_OK],
    ['source route to an outside mailbox: judged on the final mailbox', '<@doe-family.com:victim@example.org>', RELAY_DENIED],
    ['source route with an address literal hop', '<@[192.0.2.1]:victim@example.org>', RELAY_DENIED],
    ['upper-case local domain', '<jdoe@DOE-FAMILY.COM>', RCPT_OK],
    ['mixed-case local domain', '<jdoe@Doe-Family.Com>', RCPT_OK],
    ['trailing root dot on the local domain', '<jdoe@doe-family.com.>', BAD_RCPT],
    ['trailing root dot on an outside domain', '<victim@example.org.>', BAD_RCPT],
    ['IPv4 literal of this very server: never local', '<jdoe@[127.0.0.1]>', RELAY_DENIED],
    ['IPv6 literal: never local', '<jdoe@[IPv6:::1]>', RELAY_DENIED],
    ['IPv4-mapped IPv6 literal: never local', '<jdoe@[IPv6:::ffff:127.0.0.1]>', RELAY_DENIED],
    ['malformed address literal', '<jdoe@[127.0.0.256]>', BAD_RCPT],
    ['% in the local part', '<victim%example.org@doe-family.com>', RELAY_DENIED],
    ['! in the local part', '<example.org!victim@doe-family.com>', RELAY_DENIED],
    ['quoted @', '<"victim@example.org"@doe-family.com>', RELAY_DENIED],
    ['quoted %', '<"victim%example.org"@doe-family.com>', RELAY_DENIED],
    ['quoted !', '<"example.org!victim"@doe-family.com>', RELAY_DENIED],
    ['backslash-escaped @ in quotes', '<"victim\\@example.org"@doe-family.com>', RELAY_DENIED],
    ['fullwidth ＠ (NFKC @)', '<victim＠example.org@doe-family.com>', RELAY_DENIED, true],
    ['small commercial at ﹫ (NFKC @)', '<victim﹫example.org@doe-family.com>', RELAY_DENIED, true],
    ['fullwidth ％ (NFKC %)', '<victim％example.org@doe-family.com>', RELAY_DENIED, true],
    ['fullwidth ！ (NFKC !)', '<example.org！victim@doe-family.com>', RELAY_DENIED, true],
    ['routing without a domain: %', '<victim%example.org>', RELAY_DENIED],
    ['postmaster without a domain', '<postmaster>', RCPT_OK],
    ['Postmaster without a domain, any case', '<PostMaster>', RCPT_OK],
    ['another local part without a domain', '<jdoe>', BAD_RCPT],
    ['the null path as a recipient', '<>', BAD_RCPT],
    ['missing angle brackets', 'jdoe@doe-family.com', BAD_RCPT],
    ['second unquoted @', '<victim@example.org@doe-family.com>', BAD_RCPT],
    ['backslash outside quotes', '<victim\\@example.org@doe-family.com>', BAD_RCPT],
    ['empty local part', '<@doe-family.com>', BAD_RCPT],
    ['empty quoted local part', '<""@doe-family.com>', BAD_RCPT],
    ['empty domain', '<jdoe@>', BAD_RCPT],
    ['unterminated quote', '<"jdoe@doe-family.com>', BAD_RCPT],
    ['non-ASCII without SMTPUTF8', '<jöran@doe-family.com>', NON_ASCII],
    ['non-ASCII with SMTPUTF8', '<jöran@doe-family.com>', RCPT_OK, true],
    ['junk glued to the path', '<jdoe@doe-family.com>x', '501 5.5.4 Syntax error in parameters'],
    ['unknown parameter', '<jdoe@doe-family.com> FOO=BAR', '555 5.5.4 Unsupported parameter'],
    ['a subdomain of the local domain is not local', '<jdoe@sub.doe-family.com>', RELAY_DENIED],
    ['the local domain as a prefix is not local', '<jdoe@doe-family.com.example.net>', RELAY_DENIED],
    ['the local domain glued to a name is not local', '<jdoe@evildoe-family.com>', RELAY_DENIED],
    ['a plain outside recipient', '<victim@example.org>', RELAY_DENIED],
  ];
  for (const [what, path, reply, utf8] of table) {
    test(`RCPT TO:${path} (${what}): ${reply}`, async () => {
      assert.equal(await rcpt(c, path, utf8 === true), reply);
    });
  }

  const mailTable: Array<[string, string, string]> = [
    ['the null sender', '<>', MAIL_OK],
    ['a source-routed sender', '<@relay.example:alice@example.net>', MAIL_OK],
    ['missing angle brackets', 'alice@example.net', BAD_SENDER],
    ['second unquoted @', '<alice@x.example@example.net>', BAD_SENDER],
    ['backslash outside quotes', '<ali\\ce@example.net>', BAD_SENDER],
    ['empty local part', '<@example.net>', BAD_SENDER],
    ['empty domain', '<alice@>', BAD_SENDER],
    ['trailing root dot', '<alice@example.net.>', BAD_SENDER],
    ['numeric top-level label', '<alice@192.0.2.1>', BAD_SENDER],
    ['non-ASCII without SMTPUTF8', '<jöran@example.net>', NON_ASCII],
    ['junk glued to the path', '<alice@example.net>junk', '501 5.5.4 Syntax error in parameters'],
    ['unknown parameter', '<alice@example.net> XFOO', '555 5.5.4 Unsupported parameter'],
  ];
  for (const [what, arg, reply] of mailTable) {
    test(`MAIL FROM:${arg} (${what}): ${reply}`, async () => {
      assert.equal(await mail(c, arg), reply);
    });
  }
});

describe('what rules and the spool see: the canonical form', () => {
  test('ctx::rcpt() and ctx::mail_from() are canonical: route dropped, domain lower-cased, IDN as A-labels, literal normalised, needless quotes gone', async () => {
    const echo = policyText('  rcpt: [ rule "echo" || reject(`550 5.7.1 mail=${ctx::mail_from()} rcpt=${ctx::rcpt()} local=${ctx::rcpt().local_part} domain=${ctx::rcpt().domain}`) ],');
    const s = await startFullServer({ policy: echo, set: PATIENT });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      assert.equal((await c.command('MAIL FROM:<@a.example,@b.example:Alice@EXAMPLE.Net> SMTPUTF8')).last, MAIL_OK);
      const seen = async (path: string): Promise<string> => (await c.command(`RCPT TO:${path}`)).last;
      assert.equal(await seen('<@x.example:Jdoe@DOE-Family.COM>'), '550 5.7.1 mail=Alice@example.net rcpt=Jdoe@doe-family.com local=Jdoe domain=doe-family.com');
      assert.equal(await seen('<u@BÜCHER.example>'), '550 5.7.1 mail=Alice@example.net rcpt=u@xn--bcher-kva.example local=u domain=xn--bcher-kva.example');
      assert.equal(await seen('<u@[IPv6:2001:DB8:0:0::1]>'), '550 5.7.1 mail=Alice@example.net rcpt=u@[IPv6:2001:db8::1] local=u domain=[IPv6:2001:db8::1]');
      assert.equal(await seen('<"jdoe"@doe-family.com>'), '550 5.7.1 mail=Alice@example.net rcpt=jdoe@doe-family.com local=jdoe domain=doe-family.com');
      assert.equal(await seen('<"j doe"@doe-family.com>'), '550 5.7.1 mail=Alice@example.net rcpt="j doe"@doe-family.com local="j doe" domain=doe-family.com');
      assert.equal(await seen('<POSTMASTER>'), '550 5.7.1 mail=Alice@example.net rcpt=postmaster@doe-family.com local=postmaster domain=doe-family.com');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('the spooled envelope holds the canonical addresses and the raw paths as given', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY() });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      assert.equal((await c.command('MAIL FROM:<@relay.example:Alice@Example.NET>')).last, MAIL_OK);
      assert.equal((await c.command('RCPT TO:<@relay.example:jdoe@DOE-FAMILY.COM>')).last, RCPT_OK);
      assert.equal((await c.command('RCPT TO:<PostMaster>')).last, RCPT_OK);
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data('Subject: canonical\r\n\r\nbody\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      c.destroy();
      const [m, ...rest] = await s.spooled();
      assert.equal(rest.length, 0);
      assert.deepEqual(m!.record.mail_from, { local: 'Alice', domain: 'example.net', raw: '<@relay.example:Alice@Example.NET>', isNull: false });
      assert.deepEqual(
        m!.record.recipients.map((r) => r.address),
        [
          { local: 'jdoe', domain: 'doe-family.com', raw: '<@relay.example:jdoe@DOE-FAMILY.COM>', isNull: false },
          { local: 'postmaster', domain: 'doe-family.com', raw: '<PostMaster>', isNull: false },
        ],
      );
    } finally {
      await s.stop();
    }
  });
});

describe('local domains (SPEC §4.4), through the built-in relay guard', () => {
  test('server.domain and an IDN server.virtual match exactly, label-wise, case-insensitively after IDN conversion', async () => {
    const s = await startFullServer({
      policy: policyText('', 'config.server.virtual = ["bücher.example"]; config.server.relay_networks = [];'),
      set: PATIENT,
    });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      const cases: Array<[string, string]> = [
        ['<u@BÜCHER.example>', RCPT_OK],
        ['<u@xn--bcher-kva.example>', RCPT_OK],
        ['<u@XN--BCHER-KVA.EXAMPLE>', RCPT_OK],
        ['<u@doe-family.com>', RCPT_OK],
        ['<u@evilbücher.example>', RELAY_DENIED],
        ['<u@sub.bücher.example>', RELAY_DENIED],
        ['<u@bücher.example.evil.test>', RELAY_DENIED],
        ['<u@bucher.example>', RELAY_DENIED],
        ['<u@sub.doe-family.com>', RELAY_DENIED],
        ['<u@doe-family.com.evil.test>', RELAY_DENIED],
        ['<u@evildoe-family.com>', RELAY_DENIED],
        ['<u@[127.0.0.1]>', RELAY_DENIED],
      ];
      for (const [path, reply] of cases) assert.equal(await rcpt(c, path, true), reply, path);
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});
