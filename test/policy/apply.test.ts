// SPEC §5.2 as a table: every (status × stage) cell of "effects before
// queueing", plus §5.4 (what is remembered) and §5.7 (errors), checked
// against applyVerdict().

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alignEnhanced } from '../../src/mail/reply.js';
import { applyVerdict, type FrontStage } from '../../src/policy/apply.js';
import type { Reply, StatusKind, Verdict } from '../../src/mail/types.js';
import { replyLines } from '../../src/mail/reply.js';

function reply(text: string): Reply {
  const m = /^(\d{3})(?: (\d\.\d+\.\d+))? (.*)$/.exec(text)!;
  return { code: Number(m[1]), enhanced: m[2] ?? '', lines: [m[3]!] };
}

function v(status: StatusKind, code?: string, extra: Partial<Verdict> = {}): Verdict {
  return { status, reply: code === undefined ? null : reply(code), rule: 'r', at: 'main.vsl:3:5', source: 'rules', trace: [], ...extra };
}

const ERROR: Verdict = { status: 'next', reply: null, rule: 'r', at: 'main.vsl:3:5', source: 'error', error: 'boom', trace: [] };

const NORMAL: Record<FrontStage, Reply> = {
  connect: { code: 220, enhanced: '', lines: ['mx.example.org Service ready'] },
  helo: { code: 250, enhanced: '', lines: ['mx.example.org', 'PIPELINING', 'SIZE 1000'] },
  authenticate: { code: 235, enhanced: '2.7.0', lines: ['Authentication succeeded'] },
  mail: { code: 250, enhanced: '2.1.0', lines: ['Ok'] },
  rcpt: { code: 250, enhanced: '2.1.5', lines: ['Ok'] },
  preq: { code: 250, enhanced: '2.0.0', lines: ['Ok: queued as ABC'] },
};

interface Cell {
  stage: FrontStage;
  verdict: Verdict;
  /** The reply lines as sent. */
  lines: string[];
  close: boolean;
  accept: boolean;
  remember?: 'faccept' | 'quarantine' | 'deny' | null;
  quarantine?: string | null;
  errorStatus?: 'tempfail' | 'deny';
}

const greeting = ['220 mx.example.org Service ready'];
const ehlo = ['250-mx.example.org', '250-PIPELINING', '250 SIZE 1000'];
const authOk = ['235 2.7.0 Authentication succeeded'];
const auth535 = ['535 5.7.8 Authentication credentials invalid'];
const mailOk = ['250 2.1.0 Ok'];
const rcptOk = ['250 2.1.5 Ok'];
const queued = ['250 2.0.0 Ok: queued as ABC'];
const denyDefault = ['554 5.7.1 permanent problems with the remote server'];
const rejectDefault = ['550 5.7.1 Command rejected by policy'];

const CELLS: Cell[] = [
  // next, no rules
  { stage: 'connect', verdict: v('next'), lines: greeting, close: false, accept: true },
  { stage: 'helo', verdict: v('next'), lines: ehlo, close: false, accept: true },
  { stage: 'authenticate', verdict: v('next'), lines: auth535, close: false, accept: false },
  { stage: 'mail', verdict: v('next'), lines: mailOk, close: false, accept: true },
  { stage: 'rcpt', verdict: v('next'), lines: rcptOk, close: false, accept: true },
  { stage: 'preq', verdict: v('next'), lines: queued, close: false, accept: true },
  { stage: 'mail', verdict: v('next', undefined, { source: 'no rules', rule: null, at: null }), lines: mailOk, close: false, accept: true },

  // accept(c) and accept()
  { stage: 'connect', verdict: v('accept', '220 welcome friend'), lines: ['220 welcome friend'], close: false, accept: true },
  { stage: 'connect', verdict: v('accept'), lines: greeting, close: false, accept: true },
  { stage: 'connect', verdict: v('accept', '250 2.0.0 hi'), lines: ['220 2.0.0 hi'], close: false, accept: true },
  { stage: 'helo', verdict: v('accept', '250 hello there'), lines: ['250-hello there', '250-PIPELINING', '250 SIZE 1000'], close: false, accept: true },
  { stage: 'helo', verdict: v('accept'), lines: ehlo, close: false, accept: true },
  { stage: 'authenticate', verdict: v('accept'), lines: authOk, close: false, accept: true },
  { stage: 'authenticate', verdict: v('accept', '235 2.7.0 welcome back'), lines: ['235 2.7.0 welcome back'], close: false, accept: true },
  { stage: 'mail', verdict: v('accept', '250 2.1.0 sender fine'), lines: ['250 2.1.0 sender fine'], close: false, accept: true },
  { stage: 'mail', verdict: v('accept'), lines: mailOk, close: false, accept: true },
  { stage: 'rcpt', verdict: v('accept', '250 2.1.5 welcome'), lines: ['250 2.1.5 welcome'], close: false, accept: true },
  { stage: 'preq', verdict: v('accept', '250 2.0.0 thanks'), lines: ['250 2.0.0 thanks'], close: false, accept: true },
  { stage: 'preq', verdict: v('accept'), lines: queued, close: false, accept: true },

  // accept/faccept carrying 4xx/5xx refuse exactly as reject (SPEC §5.1)
  { stage: 'mail', verdict: v('accept', '550 5.7.1 no'), lines: ['550 5.7.1 no'], close: false, accept: false },
  { stage: 'rcpt', verdict: v('faccept', '450 4.2.0 later'), lines: ['450 4.2.0 later'], close: false, accept: false, remember: null },
  { stage: 'connect', verdict: v('accept', '550 5.7.1 no'), lines: ['554 5.7.1 no'], close: true, accept: false },

  // faccept(c)
  { stage: 'connect', verdict: v('faccept', '220 trusted'), lines: ['220 trusted'], close: false, accept: true, remember: 'faccept' },
  { stage: 'helo', verdict: v('faccept'), lines: ehlo, close: false, accept: true, remember: 'faccept' },
  { stage: 'authenticate', verdict: v('faccept'), lines: auth535, close: false, accept: false, remember: null },
  { stage: 'authenticate', verdict: v('faccept', '235 2.7.0 ok'), lines: auth535, close: false, accept: false, remember: null },
  { stage: 'mail', verdict: v('faccept'), lines: mailOk, close: false, accept: true, remember: 'faccept' },
  { stage: 'rcpt', verdict: v('faccept', '250 2.1.5 vip'), lines: ['250 2.1.5 vip'], close: false, accept: true, remember: 'faccept' },
  { stage: 'preq', verdict: v('faccept'), lines: queued, close: false, accept: true, remember: 'faccept' },

  // deny(c) and deny()
  { stage: 'connect', verdict: v('deny', '554 5.7.1 go away'), lines: ['554 5.7.1 go away'], close: true, accept: false, remember: 'deny' },
  { stage: 'connect', verdict: v('deny'), lines: denyDefault, close: true, accept: false },
  { stage: 'connect', verdict: v('deny', '550 5.7.1 nope'), lines: ['554 5.7.1 nope'], close: true, accept: false },
  { stage: 'connect', verdict: v('deny', '450 4.7.1 busy'), lines: ['421 4.7.1 busy'], close: true, accept: false },
  { stage: 'helo', verdict: v('deny', '550 5.7.1 bad helo'), lines: ['550 5.7.1 bad helo'], close: true, accept: false, remember: 'deny' },
  { stage: 'helo', verdict: v('deny'), lines: denyDefault, close: true, accept: false },
  { stage: 'authenticate', verdict: v('deny', '535 5.7.8 banned'), lines: ['535 5.7.8 banned'], close: true, accept: false, remember: null },
  { stage: 'authenticate', verdict: v('deny'), lines: auth535, close: true, accept: false, remember: null },
  { stage: 'mail', verdict: v('deny', '554 5.7.1 Relay access denied'), lines: ['554 5.7.1 Relay access denied'], close: true, accept: false, remember: 'deny' },
  { stage: 'mail', verdict: v('deny'), lines: denyDefault, close: true, accept: false },
  { stage: 'rcpt', verdict: v('deny', '550 5.1.1 spamtrap'), lines: ['550 5.1.1 spamtrap'], close: true, accept: false, remember: 'deny' },
  { stage: 'preq', verdict: v('deny', '550 5.7.1 virus'), lines: ['550 5.7.1 virus'], close: true, accept: false, remember: 'deny' },
  { stage: 'preq', verdict: v('deny'), lines: denyDefault, close: true, accept: false },

  // reject(c), info(c), reject()
  { stage: 'connect', verdict: v('reject', '554 5.7.1 not here'), lines: ['554 5.7.1 not here'], close: true, accept: false },
  { stage: 'connect', verdict: v('info', '421 4.7.0 later'), lines: ['421 4.7.0 later'], close: true, accept: false },
  { stage: 'helo', verdict: v('reject', '550 5.7.1 bad helo'), lines: ['550 5.7.1 bad helo'], close: false, accept: false, remember: null },
  { stage: 'helo', verdict: v('info', '504 5.5.2 need fqdn'), lines: ['504 5.5.2 need fqdn'], close: false, accept: false },
  { stage: 'authenticate', verdict: v('reject', '535 5.7.8 nope'), lines: ['535 5.7.8 nope'], close: false, accept: false },
  { stage: 'authenticate', verdict: v('reject'), lines: auth535, close: false, accept: false },
  { stage: 'mail', verdict: v('reject', '550 5.7.1 bad sender'), lines: ['550 5.7.1 bad sender'], close: false, accept: false },
  { stage: 'mail', verdict: v('reject'), lines: rejectDefault, close: false, accept: false },
  { stage: 'rcpt', verdict: v('reject', '550 5.1.1 unknown user'), lines: ['550 5.1.1 unknown user'], close: false, accept: false },
  { stage: 'rcpt', verdict: v('info', '451 4.7.1 greylisted'), lines: ['451 4.7.1 greylisted'], close: false, accept: false },
  { stage: 'preq', verdict: v('reject', '550 5.7.1 spam'), lines: ['550 5.7.1 spam'], close: false, accept: false },
  { stage: 'preq', verdict: v('info', '451 4.7.1 later'), lines: ['451 4.7.1 later'], close: false, accept: false },

  // quarantine(q)
  { stage: 'connect', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: greeting, close: false, accept: true, remember: 'quarantine' },
  { stage: 'helo', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: ehlo, close: false, accept: true, remember: 'quarantine' },
  { stage: 'authenticate', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: auth535, close: false, accept: false, remember: null },
  { stage: 'mail', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: mailOk, close: false, accept: true, remember: 'quarantine' },
  { stage: 'rcpt', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: rcptOk, close: false, accept: true, remember: 'quarantine' },
  { stage: 'preq', verdict: v('quarantine', undefined, { quarantine: 'q1' }), lines: queued, close: false, accept: true, remember: 'quarantine', quarantine: 'q1' },

  // rule error, tempfail (default)
  { stage: 'connect', verdict: ERROR, lines: ['421 4.3.0 Temporary local problem, try again later'], close: true, accept: false, remember: null },
  { stage: 'helo', verdict: ERROR, lines: ['451 4.3.0 Temporary local problem, try again later'], close: false, accept: false, remember: null },
  { stage: 'authenticate', verdict: ERROR, lines: ['454 4.7.0 Temporary authentication failure'], close: false, accept: false },
  { stage: 'mail', verdict: ERROR, lines: ['451 4.3.0 Temporary local problem, try again later'], close: false, accept: false },
  { stage: 'rcpt', verdict: ERROR, lines: ['451 4.3.0 Temporary local problem, try again later'], close: false, accept: false },
  { stage: 'preq', verdict: ERROR, lines: ['451 4.3.0 Temporary local problem, try again later'], close: false, accept: false },

  // rule error, deny mode: deny() with the default code
  { stage: 'connect', verdict: ERROR, errorStatus: 'deny', lines: denyDefault, close: true, accept: false },
  { stage: 'helo', verdict: ERROR, errorStatus: 'deny', lines: denyDefault, close: true, accept: false },
  { stage: 'authenticate', verdict: ERROR, errorStatus: 'deny', lines: auth535, close: true, accept: false },
  { stage: 'mail', verdict: ERROR, errorStatus: 'deny', lines: denyDefault, close: true, accept: false, remember: null },
  { stage: 'rcpt', verdict: ERROR, errorStatus: 'deny', lines: denyDefault, close: true, accept: false },
  { stage: 'preq', verdict: ERROR, errorStatus: 'deny', lines: denyDefault, close: true, accept: false },
];

describe('SPEC §5.2 effects before queueing, cell by cell', () => {
  for (const cell of CELLS) {
    const code = cell.verdict.reply ? ` ${replyLines(cell.verdict.reply)[0]}` : '';
    const name = `${cell.verdict.source === 'error' ? `rule error (${cell.errorStatus ?? 'tempfail'})` : `${cell.verdict.status}(${code.trim()})`} at ${cell.stage}: ${cell.lines[0]}${cell.close ? ', close' : ''}${cell.accept ? ', takes effect' : ''}`;
    test(name, () => {
      const got = applyVerdict(cell.stage, cell.verdict, { errorStatus: cell.errorStatus ?? 'tempfail', normal: NORMAL[cell.stage] });
      assert.deepEqual(replyLines(got.reply), cell.lines);
      assert.equal(got.close, cell.close, 'close');
      assert.equal(got.accept, cell.accept, 'accept');
      if (cell.remember !== undefined) assert.equal(got.remember?.kind ?? null, cell.remember, 'remember');
      if (cell.quarantine !== undefined) assert.equal(got.quarantine, cell.quarantine, 'quarantine');
    });
  }
});

describe('SPEC §5.4 remembered statuses', () => {
  test('a remembered faccept sends the stage normal success reply, not the original code', () => {
    const got = applyVerdict('rcpt', v('faccept', '250 2.1.5 vip', { source: 'remembered' }), { errorStatus: 'tempfail', normal: NORMAL.rcpt });
    assert.deepEqual(replyLines(got.reply), rcptOk);
    assert.equal(got.accept, true);
    assert.equal(got.remember, null, 'not remembered a second time');
  });

  test('a remembered quarantine at preq stores the message in that quarantine', () => {
    const got = applyVerdict('preq', v('quarantine', undefined, { quarantine: 'held', source: 'remembered' }), { errorStatus: 'tempfail', normal: NORMAL.preq });
    assert.equal(got.quarantine, 'held');
    assert.deepEqual(replyLines(got.reply), queued);
  });

  test('the remembered status carries the deciding rule and position', () => {
    const got = applyVerdict('mail', v('faccept', undefined, { rule: 'trusted sender', at: 'main.vsl:9:3' }), { errorStatus: 'tempfail', normal: NORMAL.mail });
    assert.deepEqual(got.remember, { kind: 'faccept', rule: 'trusted sender', at: 'main.vsl:9:3' });
  });

  test('quarantine at preq without a name fails closed as a rule error', () => {
    const got = applyVerdict('preq', v('quarantine'), { errorStatus: 'tempfail', normal: NORMAL.preq });
    assert.deepEqual(replyLines(got.reply), ['451 4.3.0 Temporary local problem, try again later']);
    assert.equal(got.accept, false);
  });
});

describe('reply codes', () => {
  test('the enhanced class follows the reply code (451 5.7.24 is sent as 451 4.7.24)', () => {
    assert.deepEqual(alignEnhanced(reply('451 5.7.24 SPF validation error')), reply('451 4.7.24 SPF validation error'));
  });

  test('a refusal status carrying a 2xx code uses the default refusal instead (fail closed)', () => {
    const got = applyVerdict('mail', v('reject', '250 2.0.0 fine'), { errorStatus: 'tempfail', normal: NORMAL.mail });
    assert.deepEqual(replyLines(got.reply), rejectDefault);
    assert.equal(got.accept, false);
  });
});
