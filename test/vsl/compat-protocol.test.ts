// vSMTP compatibility, second round (issue 18): the protocol behaviour
// vSMTP's transcript tests expect, played with `mta test` in-process —
// HELO/EHLO syntax, STARTTLS in transcripts, AUTH in clear or not,
// rcpt_count_max, DNSBL replies and custom deny/info codes.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertTranscriptsPass, checkDiagnostics } from './compat-helpers.js';

function config(lines: string[]): string {
  return `fn on_config(config) {
  config.server.name = "mx.compat.test";
  config.server.domain = "compat.test";
  config.server.relay_networks = [];
${lines.map((l) => `  ${l}\n`).join('')}  config
}
`;
}

describe('protocol behaviour of vSMTP transcripts', () => {
  test('HELO/EHLO with a doubled or trailing blank gets 501 5.5.4, as in vSMTP; one space and a name is fine', async () => {
    await assertTranscriptsPass({ 'main.vsl': `${config([])}#{}\n` }, {
      'blanks.smtp': `S: 220
C: EHLO  client.example
S: 501 5.5.4
C: EHLO client.example 
S: 501 5.5.4
C: HELO client.example\t
S: 501 5.5.4
C: EHLO
S: 501 5.5.4
C: MAIL FROM:<a@example.org>
S: 503 5.5.1
C: EHLO client.example
S: 250 mx.compat.test
C: HELO client.example
S: 250 mx.compat.test
`,
    });
  });

  test('with server.smtp.helo_syntax = "strict", an invalid domain or address literal gets 501 5.5.4 (vSMTP)', async () => {
    await assertTranscriptsPass({ 'main.vsl': `${config(['config.server.smtp.helo_syntax = "strict";'])}#{}\n` }, {
      'strict.smtp': `S: 220
C: EHLO bad!host.example
S: 501 5.5.4
C: EHLO -dash.example
S: 501 5.5.4
C: EHLO two..dots.example
S: 501 5.5.4
C: HELO [999.1.1.1]
S: 501 5.5.4
C: HELO [IPv6:2001:db8::zz]
S: 501 5.5.4
C: HELO [192.0.2.1
S: 501 5.5.4
C: HELO [192.0.2.1]
S: 250
C: HELO [IPv6:2001:db8::1]
S: 250
C: EHLO localhost
S: 250
C: EHLO bücher.example
S: 250
`,
    });
  });

  test('server.smtp.helo_syntax takes "lenient" or "strict"; anything else is a load error naming the key', async () => {
    const diags = await checkDiagnostics({ 'main.vsl': `${config(['config.server.smtp.helo_syntax = "sloppy";'])}#{}\n` });
    assert.equal(diags.find((d) => d.severity === 'error')?.message,
      'server.smtp.helo_syntax: expected one of "lenient", "strict", got "sloppy"');
  });

  test('by default an invalid HELO name reaches the helo rules (SPEC §8.2 reject_invalid_helo_hostname judges it)', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config([])}#{ helo: [ rule "invalid" || postfix::reject_invalid_helo_hostname() ] }\n`,
    }, {
      'lenient.smtp': `S: 220
C: HELO bad!host.example
S: 501 5.5.2 <bad!host.example>: Helo command rejected: Invalid name
C: HELO good.example
S: 250
`,
    });
  });

  test('STARTTLS in a transcript when the policy configures TLS; a second STARTTLS is refused (SPEC §4.5)', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config(['config.server.tls.certificate = "cert.pem";', 'config.server.tls.private_key = "key.pem";'])}
#{ helo: [ rule "tls seen" || if ctx::helo() == "after.example" && !ctx::is_secured() { deny() } else { next() } ] }
`,
    }, {
      'starttls.smtp': `S: 220
C: EHLO before.example
S: 250 mx.compat.test
C: STARTTLS
S: 220 2.0.0 Ready to start TLS
C: EHLO after.example
S: 250 mx.compat.test
C: STARTTLS
S: 503 5.5.1 TLS already active
C: MAIL FROM:<a@example.org>
S: 250
`,
    });
  });

  test('AUTH PLAIN and LOGIN in clear when server.tls.require_for_auth is false', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config(['config.server.tls.require_for_auth = false;'])}
#{ authenticate: [ rule "users" || if auth::credentials().authid == "ann" && auth::credentials().authpass == "pw" { accept() } else { next() } ] }
`,
    }, {
      // PLAIN ann/pw; LOGIN ann/pw (YW5u = ann, cHc= = pw).
      'clear.smtp': `S: 220
C: EHLO client.example
S: 250
C: AUTH PLAIN AGFubgBwdw==
S: 235 2.7.0 Authentication succeeded
C: QUIT
S: 221
---
S: 220
C: EHLO client.example
S: 250
C: AUTH LOGIN
S: 334 VXNlcm5hbWU6
C: YW5u
S: 334 UGFzc3dvcmQ6
C: cHc=
S: 235 2.7.0
`,
    });
  });

  test('AUTH in clear gets 538 5.7.11 Encryption required where TLS is required; after STARTTLS it works', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config(['config.server.tls.certificate = "cert.pem";', 'config.server.tls.private_key = "key.pem";'])}
#{ authenticate: [ rule "users" || if auth::credentials().authid == "ann" && auth::credentials().authpass == "pw" { accept() } else { next() } ] }
`,
    }, {
      'required.smtp': `S: 220
C: EHLO client.example
S: 250
C: AUTH PLAIN AGFubgBwdw==
S: 538 5.7.11 Encryption required for requested authentication mechanism
C: STARTTLS
S: 220
C: EHLO client.example
S: 250
C: AUTH PLAIN AGFubgBwdw==
S: 235 2.7.0
`,
    });
  });

  test('more recipients than server.smtp.rcpt_count_max: 452 4.5.3 Too many recipients, and the rules do not run', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config(['config.server.smtp.rcpt_count_max = 2;'])}
#{ rcpt: [ rule "refuse the third" || if ctx::rcpt().local_part == "c" { reject("550 5.7.1 rule ran") } else { next() } ] }
`,
    }, {
      'count.smtp': `S: 220
C: EHLO client.example
C: MAIL FROM:<x@example.org>
C: RCPT TO:<a@compat.test>
C: RCPT TO:<b@compat.test>
C: RCPT TO:<c@compat.test>
C: DATA
S: 250
S: 250
S: 250 2.1.5
S: 250 2.1.5
S: 452 4.5.3 Too many recipients
S: 354
C: Subject: many
C:
C: x
C: .
S: 250
@expect rcpt a@compat.test
@expect rcpt b@compat.test
@expect no-rcpt c@compat.test
`,
    });
  });

  test('the DNSBL example: a listed client is refused at connect with the zone named, others are greeted', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config([])}
#{
  connect: [ rule "dnsbl" || check_rbl("bl.compat.test") ],
  mail: [ rule "rhsbl" || check_rhsbl("dbl.compat.test", "554 5.7.1 sender domain listed") ],
}
`,
    }, {
      'dnsbl.smtp': `@client 203.0.113.9
@dns 9.113.0.203.bl.compat.test A 127.0.0.2
S: 554 5.7.1 Service unavailable; client [203.0.113.9] blocked using bl.compat.test
---
@client 203.0.113.10
@dns spam.example.dbl.compat.test A 127.0.1.2
S: 220 mx.compat.test
C: EHLO client.example
S: 250
C: MAIL FROM:<a@spam.example>
S: 554 5.7.1 sender domain listed
`,
    });
  });

  test("deny and info with custom codes and messages, as vSMTP's rule-engine tests write them", async () => {
    await assertTranscriptsPass({
      'main.vsl': `${config([])}
object deny_satan code = #{ base: 501, enhanced: "5.7.1", text: "satan is blacklisted on this server\\r\\n" };
object deny_evil string = "501 5.7.1 evil is blacklisted on this server\\r\\n";
object retry code = "451 4.7.1 greylisted, retry\\r\\n";
#{
  helo: [
    rule "helo info" || if ctx().helo == "foo" { sys::info(code(450, "4.7.0", "foo is not accepted as a helo value")) } else { sys::next() },
    rule "informative 2xx" || if ctx().helo == "bar" { sys::info("250 I do not accept this email, sorry\\r\\n") } else { sys::next() },
  ],
  mail: [
    rule "blacklist" || {
      if ctx().mail_from.domain == "satan.org" { sys::deny(deny_satan) }
      else if ctx().mail_from.domain == "evil.com" { sys::deny(deny_evil) }
      else if ctx().mail_from.domain == "later.org" { vsl::info(retry) }
      else if ctx().mail_from.domain == "unpleasant.eu" { sys::deny("501 5.7.1 unpleasant is blacklisted on this server\\r\\n") }
      else { sys::next() }
    },
  ],
}
`,
    }, {
      'codes.smtp': `S: 220
C: HELO foo
S: 450 4.7.0 foo is not accepted as a helo value
C: HELO bar
# info() needs 4xx/5xx (SPEC §5.1): a 2xx is a rule error, refused with the tempfail reply
S: 451 4.3.0
C: HELO good.example
S: 250
C: MAIL FROM:<a@later.org>
S: 451 4.7.1 greylisted, retry
C: MAIL FROM:<a@unpleasant.eu>
S: 501 5.7.1 unpleasant is blacklisted on this server
---
S: 220
C: HELO good.example
S: 250
C: MAIL FROM:<lucifer@satan.org>
S: 501 5.7.1 satan is blacklisted on this server
---
S: 220
C: HELO good.example
S: 250
C: MAIL FROM:<x@evil.com>
S: 501 5.7.1 evil is blacklisted on this server
`,
    });
  });
});
