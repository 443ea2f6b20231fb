// The spooled message as the post-queue stages read it (src/queue/message.ts):
// a field folded over many lines is one field, byte for byte (issue 16 item 1
// on the delivery side: the split is one pass, it no longer recopies the
// field per continuation line).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerBlock, headerValue, messageView } from '../../src/queue/message.js';

test('a field folded over 100,000 lines reads back as one field with every line', () => {
  const folded = `X-Long: start\r\n${' a\r\n'.repeat(100_000)}`;
  const message = Buffer.from(`Received: from x\r\n${folded}Subject: after\r\n\r\nbody\r\n`);
  const headers = messageView(message).headers();
  assert.deepEqual(headers.map((h) => h.name), ['Received', 'X-Long', 'Subject']);
  assert.equal(`${headers[1]!.raw}`, folded);
  assert.equal(headerValue(message, 'Subject'), 'after');
  assert.equal(headerBlock(message).toString(), `Received: from x\r\n${folded}Subject: after\r\n`);
});
