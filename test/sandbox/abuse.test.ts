// A hostile or broken policy against the sandbox (SPEC §5.7, §13): endless
// loops, memory bombs, runaway recursion, attempts to reach JavaScript's
// globals, bad rule values and failing built-ins. Each must end in an error
// verdict naming the rule, and the same policy runtime must then evaluate
// the next call correctly.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestPolicy, loadError, session } from '../helpers/vsl.js';
import type { Verdict } from '../../src/mail/types.js';

// Every abuse is a helo rule selected by the HELO name; "good.test" reaches
// the last rule, which accepts.
const POLICY = `
fn on_config(config) {
  config.vsl.rule_timeout = "200ms";
  config.vsl.memory_limit = "16MiB";
  config
}

fn deep(n) { if n == 0 { 0 } else { 1 + deep(n - 1) } }
fn poke(x) { this.constructor }

#{
  helo: [
    rule "spin" || if ctx::helo() == "spin.test" { loop {} } else { next() },
    rule "spin caught" || if ctx::helo() == "spin-caught.test" { try { loop {} } catch { accept() } } else { next() },
    rule "string bomb" || if ctx::helo() == "strings.test" { let s = "xxxxxxxx"; loop { s += s; } } else { next() },
    rule "array bomb" || if ctx::helo() == "arrays.test" { let a = [0]; loop { a += a; } } else { next() },
    rule "bomb caught" || if ctx::helo() == "bomb-caught.test" { try { let a = [0]; loop { a += a; } } catch { accept() } } else { next() },
    rule "recursion" || if ctx::helo() == "deep.test" { deep(100000); next() } else { next() },
    rule "recursion caught" || if ctx::helo() == "deep-caught.test" { try { deep(100000) } catch { accept() } } else { next() },
    rule "string constructor" || if ctx::helo() == "ctor.test" { let x = "a"; x.constructor } else { next() },
    rule "array constructor" || if ctx::helo() == "actor.test" { [].constructor } else { next() },
    rule "fn constructor" || if ctx::helo() == "fctor.test" { (|| 1).constructor } else { next() },
    rule "this constructor" || if ctx::helo() == "tctor.test" { "s".poke(1) } else { next() },
    rule "proto keys" || if ctx::helo() == "proto.test" {
      let m = #{};
      m["__proto__"] = #{ polluted: true };
      m.constructor = "c";
      let fresh = #{};
      if fresh.polluted == () && fresh.constructor == () && m.keys() == ["__proto__", "constructor"] { accept("250 plain keys") } else { deny() }
    } else { next() },
    rule "not a status" || if ctx::helo() == "value.test" { 42 } else { next() },
    rule "unit" || if ctx::helo() == "unit.test" { let x = 1; } else { next() },
    rule "bad argument" || if ctx::helo() == "badarg.test" { dns::lookup(42) } else { next() },
    rule "failing lookup" || if ctx::helo() == "dns.test" {
      dns::lookup("mx.example.test");
      next()
    } else { next() },
    rule "caught lookup" || if ctx::helo() == "dns-caught.test" {
      try { dns::lookup("mx.example.test"); next() } catch (e) { reject(\`550 caught: \${e}\`) }
    } else { next() },
    rule "spin after io" || if ctx::helo() == "io-spin.test" { try { dns::lookup("mx.example.test") } catch {} loop {} } else { next() },
    rule "good" || accept("250 still working"),
  ],
}
`;

let policy: TestPolicy;
before(async () => {
  policy = await TestPolicy.load({ 'main.vsl': POLICY });
});
after(() => policy.close());

async function helo(name: string): Promise<Verdict> {
  return (await policy.run('helo', session({ helo: name }))).verdict;
}

/** The abuse fails its rule, and the runtime then answers the next call. */
async function failsThenRecovers(heloName: string, rule: string, message: RegExp, at?: string): Promise<Verdict> {
  const v = await helo(heloName);
  assert.equal(v.source, 'error', `${heloName}: ${JSON.stringify(v)}`);
  assert.equal(v.rule, rule);
  assert.equal(v.status, 'next'); // the runner's default error handling (tempfail) is applied by the caller
  assert.match(v.error!, new RegExp(`^rule "${rule}" failed at helo: `));
  assert.match(v.error!, message);
  if (at) assert.ok(v.error!.endsWith(`(${at})`), v.error);
  assert.equal(v.trace.at(-1)?.status, 'error');
  const next = await helo('good.test');
  assert.equal(next.status, 'accept', JSON.stringify(next));
  assert.deepEqual(next.reply?.lines, ['still working']);
  return v;
}

test('an endless loop is stopped at vsl.rule_timeout, and catch cannot swallow the timeout', async () => {
  await failsThenRecovers('spin.test', 'spin', /timeout: the rule ran longer than 200ms/);
  await failsThenRecovers('spin-caught.test', 'spin caught', /timeout/);
});

test('the timeout also stops a rule that loops after waiting for I/O (the wait itself is not counted)', async () => {
  await failsThenRecovers('io-spin.test', 'spin after io', /timeout: the rule ran longer than 200ms/);
});

test('memory bombs (string doubling, array doubling) fail their rule, uncatchably', async () => {
  await failsThenRecovers('strings.test', 'string bomb', /memory limit exceeded|string too long|timeout/);
  await failsThenRecovers('arrays.test', 'array bomb', /memory limit exceeded|timeout/);
  await failsThenRecovers('bomb-caught.test', 'bomb caught', /memory limit exceeded|timeout/);
});

test('recursion 100,000 deep stops at call depth 64, at the call that went too deep', async () => {
  await failsThenRecovers('deep.test', 'recursion', /call depth exceeded: more than 64 nested calls/, 'main.vsl:8:41');
  await failsThenRecovers('deep-caught.test', 'recursion caught', /call depth exceeded/);
});

test('JavaScript internals are unreachable: constructor reads are runtime errors', async () => {
  await failsThenRecovers('ctor.test', 'string constructor', /cannot read property 'constructor' of string/);
  await failsThenRecovers('actor.test', 'array constructor', /cannot read property 'constructor' of array/);
  await failsThenRecovers('fctor.test', 'fn constructor', /cannot read property 'constructor' of Fn/);
  await failsThenRecovers('tctor.test', 'this constructor', /cannot read property 'constructor' of string/, 'main.vsl:9:19');
});

test('__proto__ and constructor are ordinary map keys: nothing is polluted', async () => {
  const v = await helo('proto.test');
  assert.equal(v.status, 'accept', JSON.stringify(v));
  assert.deepEqual(v.reply?.lines, ['plain keys']);
});

test('escape hatches are load errors: globalThis, Function, eval, import(), process, require, prototype names', async () => {
  const cases: Array<[string, string]> = [
    ['globalThis', "unknown variable 'globalThis'"],
    ['Function("return 1")', "unknown function 'Function'"],
    ['eval("1")', "'eval' is a reserved word and cannot be used as a name"],
    ['import("fs")', "expected an expression, found 'import'"],
    ['process', "unknown variable 'process'"],
    ['require("fs")', "unknown function 'require'"],
    ['constructor("return 1")', "unknown function 'constructor'"],
    ['__proto__', "unknown variable '__proto__'"],
  ];
  for (const [expr, message] of cases) {
    assert.equal(await loadError({ 'main.vsl': `#{ helo: [ rule "escape" || ${expr} ] }` }), `main.vsl:1:29: ${message}`, expr);
  }
});

test('a rule returning a non-status is an error naming the rule and the type', async () => {
  await failsThenRecovers('value.test', 'not a status', /rule 'not a status' returned i64, expected a status/);
  await failsThenRecovers('unit.test', 'unit', /rule 'unit' returned \(\), expected a status/);
});

test('a built-in that fails (wrong argument, failing resolver) is an error with the vSL position of the call', async () => {
  await failsThenRecovers('badarg.test', 'bad argument', /dns::lookup: host must be a string, got i64/, 'main.vsl:33:62');
  await failsThenRecovers('dns.test', 'failing lookup', /dns::lookup: /, 'main.vsl:35:7');
  const caught = await helo('dns-caught.test');
  assert.equal(caught.status, 'reject');
  assert.match(caught.reply!.lines[0]!, /^caught: dns::lookup: /);
});
