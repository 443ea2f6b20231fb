// headerEdits and envelopeEdits: a MessageDraft edited as preq edits it,
// compared with what the MTA sent, gives the milter requests that turn one
// into the other, with Postfix's indexes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envelopeEdits, headerEdits } from '../../src/milter/edits.js';
import { MessageDraft, type RawField } from '../../src/smtp/message.js';
import { parseMailbox } from '../../src/vsl/values/address.js';

function shownHeaders(...lines: string[]): RawField[] {
  return lines.map((l) => ({ name: l.slice(0, l.indexOf(':')), raw: Buffer.from(l) }));
}

function edit(shown: RawField[], fn: (d: MessageDraft) => void): ReturnType<typeof headerEdits> {
  const draft = MessageDraft.assemble([], { fields: [...shown], body: Buffer.from('body\r\n'), headerBytes: 0 });
  fn(draft);
  return headerEdits(shown, draft.fields);
}

const addr = (s: string) => parseMailbox(s)!;

describe('milter header edits', () => {
  const shown = shownHeaders('From: a@example.org', 'To: b@example.org', 'Subject: hi');

  it('asks for nothing when the stage changed nothing', () => {
    assert.deepEqual(edit(shown, () => undefined), []);
  });

  it('renames a header as a deletion and an insertion at the same place', () => {
    assert.deepEqual(edit(shown, (d) => d.rename('To', 'X-Original-To')), [
      { kind: 'change', name: 'To', index: 1, value: '' },
      { kind: 'insert', index: 2, name: 'X-Original-To', value: 'b@example.org' },
    ]);
  });

  it('inserts several headers at the top in their order (sent last first at one index)', () => {
    assert.deepEqual(edit(shown, (d) => { d.prepend('X-B', '2'); d.prepend('X-A', '1'); }), [
      { kind: 'insert', index: 1, name: 'X-B', value: '2' },
      { kind: 'insert', index: 1, name: 'X-A', value: '1' },
    ]);
  });

  it('sends a folded value with LF line ends', () => {
    const long = 'word '.repeat(30).trim();
    const [e] = edit(shown, (d) => d.append('X-Long', long));
    assert.equal(e!.kind, 'add');
    assert.match((e as { value: string }).value, /\n /);
    assert.equal((e as { value: string }).value.replace(/\n /g, ' '), long);
  });
});

describe('milter envelope edits', () => {
  it('changes the sender and adds and deletes recipients', () => {
    const before = { mailFrom: addr('a@example.org'), rcpts: [addr('b@example.org'), addr('c@example.org')] };
    const after = { mailFrom: addr('bounces@example.org'), rcpts: [addr('b@example.org'), addr('d@example.org')] };
    assert.deepEqual(envelopeEdits(before, after), [
      { kind: 'from', address: '<bounces@example.org>' },
      { kind: 'add-rcpt', address: '<d@example.org>' },
      { kind: 'del-rcpt', address: '<c@example.org>' },
    ]);
  });

  it('changes the sender to the null sender as <>', () => {
    assert.deepEqual(envelopeEdits({ mailFrom: addr('a@example.org'), rcpts: [] }, { mailFrom: addr('<>'), rcpts: [] }), [{ kind: 'from', address: '<>' }]);
  });
});
