// vSMTP compatibility, second round (issue 18): names and forms of vSMTP's
// own 1.x and 2.2 scripts load, and do what they did there. Each test is a
// small script in the style of vSMTP's examples and tests, played as an SMTP
// dialog with `mta test`.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertTranscriptsPass, checkDiagnostics } from './compat-helpers.js';

const CONFIG = `fn on_config(config) {
  config.server.name = "mx.compat.test";
  config.server.domain = "compat.test";
  config.server.relay_networks = [];
  config.server.tls.require_for_auth = false;
  config
}
`;

describe('vSMTP 1.x and 2.2 names and forms', () => {
  test('statuses under vsl:: and sys:: are the global ones (vsl::accept(), sys::deny(code), …)', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
#{
  connect: [
    rule "statuses compare as in vSMTP's status test" || {
      if vsl::next() is vsl::next() && vsl::next() not vsl::accept() && vsl::next().to_string() == "next" {
        vsl::accept("220 v1 greeting")
      } else {
        vsl::deny()
      }
    },
  ],
  mail: [
    rule "sys namespace" || if ctx::mail_from().local_part == "bad" { sys::deny("554 5.7.1 sys said no") } else { sys::next() },
    rule "vsl info" || if ctx::mail_from().local_part == "later" { vsl::info("451 4.7.1 come back later") } else { vsl::faccept() },
  ],
}
`,
    }, {
      'statuses.smtp': `S: 220 v1 greeting
C: EHLO client.example
S: 250
C: MAIL FROM:<later@example.org>
S: 451 4.7.1 come back later
C: MAIL FROM:<ok@example.org>
S: 250 2.1.0
C: RSET
S: 250
C: MAIL FROM:<bad@example.org>
S: 554 5.7.1 sys said no
`,
    });
  });

  test('the 1.1 data stage is the preq stage', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
#{
  data: [
    rule "no spam" || if msg::has_header("X-Spam") { vsl::deny("554 5.7.1 spam refused") } else { vsl::next() },
  ],
}
`,
    }, {
      'data.smtp': `S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<u@compat.test>
C: DATA
S: 250
S: 250
S: 250
S: 354
C: X-Spam: yes
C:
C: buy now
C: .
S: 554 5.7.1 spam refused
@expect queued 0
---
S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<u@compat.test>
C: DATA
S: 250
S: 250
S: 250
S: 354
C: Subject: hello
C:
C: hi
C: .
S: 250 2.0.0 Ok: queued as
@expect queued 1
`,
    });
  });

  test('date and time are values in 1.x scripts: the date and time of the evaluation', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
#{
  mail: [
    action "stamp" || {
      msg::append_header("X-Date", date);
      msg::append_header("X-Time", time.to_string());
    },
  ],
}
`,
    }, {
      'clock.smtp': `@time 2030-01-02T03:04:05Z
S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<u@compat.test>
C: DATA
S: 250
S: 250
S: 250
S: 354
C: Subject: t
C:
C: x
C: .
S: 250
@expect header X-Date: 2030-01-02
@expect header X-Time: 03:04:05
`,
    });
  });

  test('sys::new_address builds an address; send_mail loads, warns in mta check and fails catchably when run', async () => {
    const policy = `${CONFIG}
#{
  connect: [
    rule "new_address" || if in_domain(sys::new_address("rcpt@compat.test")) && !in_domain(sys::new_address("x@other.test")) { next() } else { deny() },
    rule "send_mail" || {
      try {
        sys::send_mail("a@compat.test", ["b@compat.test"], "template.eml", "relay");
        deny()
      } catch (err) {
        if "not supported" in err { accept() } else { deny() }
      }
    },
  ],
}
`;
    await assertTranscriptsPass({ 'main.vsl': policy }, { 'utils.smtp': 'S: 220 mx.compat.test\nC: QUIT\nS: 221\n' });
    const diags = await checkDiagnostics({ 'main.vsl': policy });
    assert.deepEqual(diags.filter((d) => d.severity === 'error'), []);
    const warning = diags.find((d) => d.message.includes('send_mail'));
    assert.ok(warning, JSON.stringify(diags));
    assert.equal(warning.severity, 'warning');
    assert.equal(warning.message, 'send_mail is not supported: the call raises a runtime error');
    assert.deepEqual([warning.pos.line, warning.pos.col], [14, 9]);
  });

  test('object NAME ident = "…" declares an identifier, found in groups and in lists of local parts', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
object john ident = "john";
object staff group = [john, object jane ident = "jane"];
#{
  rcpt: [
    rule "type" || if type_of(john) == "identifier" && john.to_string() == "john" { next() } else { deny() },
    rule "staff only" || if ctx::rcpt().local_part in staff && john in ctx::rcpt_list().local_parts { accept() } else if jane in ctx::rcpt_list().local_parts { accept() } else { reject("550 5.1.1 no such user") },
  ],
}
`,
    }, {
      'ident.smtp': `S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<john@compat.test>
C: RCPT TO:<nobody@compat.test>
C: RCPT TO:<jane@compat.test>
S: 250
S: 250 2.1.0
S: 250 2.1.5
S: 550 5.1.1 no such user
S: 250 2.1.5
`,
    });
  });

  test('packet (1.0: vsl::send) in a 1.1 authentication script loads; PLAIN credentials are "Verify", so the script decides', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
#{
  authenticate: [
    rule "auth hardcoded" || {
      let db = #{ "hello": "world" };
      switch ctx().auth.type {
        "Verify" => if db[ctx().auth.authid] == ctx().auth.authpass { accept() } else { deny() },
        "Query" => packet(db[ctx().auth.authid]),
        "Other" => vsl::send(db[ctx().auth.authid]),
      }
    },
  ],
}
`,
    }, {
      // hello / world, then a wrong password: deny() refuses with its default code and closes (SPEC §5.2).
      'auth.smtp': `S: 220
C: EHLO client.example
S: 250
C: AUTH PLAIN AGhlbGxvAHdvcmxk
S: 235 2.7.0
C: QUIT
S: 221
---
S: 220
C: EHLO client.example
S: 250
C: AUTH PLAIN AGhlbGxvAHdyb25n
S: 554 5.7.1
`,
    });
  });

  test('rewrite_rcpt_envelop and envelop::rw_rcpt with one argument replace the recipient under evaluation', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
#{
  rcpt: [
    action "v1.3 rewrite" || if ctx::rcpt().local_part == "old" { rewrite_rcpt_envelop("new@compat.test") },
    action "v2 rewrite" || if ctx::rcpt().local_part == "legacy" { envelop::rw_rcpt("modern@compat.test") },
  ],
}
`,
    }, {
      'rewrite.smtp': `S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<old@compat.test>
C: RCPT TO:<legacy@compat.test>
C: RCPT TO:<same@compat.test>
C: DATA
S: 250
S: 250
S: 250
S: 250
S: 250
S: 354
C: Subject: r
C:
C: x
C: .
S: 250
@expect rcpt new@compat.test
@expect rcpt modern@compat.test
@expect rcpt same@compat.test
@expect no-rcpt old@compat.test
@expect no-rcpt legacy@compat.test
`,
    });
  });

  test('the 2.2 constructors obj::address(…) and obj::code(…) are address(…) and code(…)', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
const blocked = obj::address("spammer@example.org");
const refusal = obj::code(550, "5.7.1", "you are blocked");
const nets = [obj::rg4("192.0.2.0/24"), obj::ip4("198.51.100.1"), obj::fqdn("example.org"), obj::identifier("x"), obj::regex("^a")];
#{
  mail: [
    rule "types" || if type_of(global::nets[0]) == "rg4" && type_of(global::refusal) == "code" { next() } else { deny() },
    rule "blocked sender" || if ctx::mail_from() == global::blocked { deny(global::refusal) } else { next() },
  ],
}
`,
    }, {
      'obj.smtp': `S: 220
C: EHLO client.example
S: 250
C: MAIL FROM:<friend@example.org>
S: 250 2.1.0
C: RSET
S: 250
C: MAIL FROM:<spammer@example.org>
S: 550 5.7.1 you are blocked
`,
    });
  });

  test('1.3 scripts use services and objects by name inside functions (a csv service called in a function)', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
service users db:csv = #{ connector: "users.csv", access: "O_RDONLY" };
object inside rg4 = "10.0.0.0/8";
fn is_user(name) { users.get(name).len() > 0 }
fn from_inside() { ctx::client_ip() in inside }
#{
  rcpt: [
    rule "known users" || if from_inside() || is_user(ctx::rcpt().local_part) { accept() } else { reject("550 5.1.1 unknown user") },
  ],
}
`,
      'users.csv': 'john,John Doe\n',
    }, {
      'svc.smtp': `@client 203.0.113.5
S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<john@compat.test>
C: RCPT TO:<mary@compat.test>
S: 250
S: 250 2.1.0
S: 250 2.1.5
S: 550 5.1.1 unknown user
---
@client 10.1.2.3
S: 220
C: EHLO client.example
C: MAIL FROM:<a@example.org>
C: RCPT TO:<mary@compat.test>
S: 250
S: 250
S: 250 2.1.5
`,
    });
  });

  test('1.0–1.1 scripts read the context as a variable: ctx.helo is ctx().helo', async () => {
    await assertTranscriptsPass({
      'main.vsl': `${CONFIG}
object bar fqdn = "example.com";
#{
  helo: [ rule "helo" || if ctx.helo is bar { sys::next() } else { sys::deny("554 5.7.1 helo " + ctx.helo) } ],
  mail: [ rule "domain" || if ctx.mail_from.domain == "satan.org" { sys::deny("501 5.7.1 satan") } else { sys::next() } ],
}
`,
    }, {
      'ctx.smtp': `S: 220
C: HELO example.com
S: 250
C: MAIL FROM:<lucifer@satan.org>
S: 501 5.7.1 satan
---
S: 220
C: HELO other.example
S: 554 5.7.1 helo other.example
`,
    });
  });

  test('sys:: in a policy is the v1 global API only: the internal primitives of stdlib/ stay out of reach', async () => {
    for (const call of ['sys::status("accept", ())', 'sys::client_allowed("10.0.0.0/8")', 'sys::read_lines("x")']) {
      const diags = await checkDiagnostics({ 'main.vsl': `#{ connect: [ rule "r" || ${call} ] }` });
      const error = diags.find((d) => d.severity === 'error');
      assert.match(error?.message ?? '', /^unknown function 'sys::/, call);
    }
  });

  test('a top-level const stays invisible inside functions (SPEC §2.3): only v1 declarations are shared by name', async () => {
    const diags = await checkDiagnostics({ 'main.vsl': 'const K = 1;\nfn f() { K }\n#{}' });
    assert.equal(diags.find((d) => d.severity === 'error')?.message,
      'K is not visible here: functions do not capture; pass it as a parameter or use global::K');
  });
});
