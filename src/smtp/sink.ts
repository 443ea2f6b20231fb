// Where accepted messages go: the durable queue (src/queue/) implements this.
// The SMTP front sends `250 2.0.0 Ok: queued as <id>` only after enqueue()
// resolved, so enqueue() MUST resolve only once the message is on disk
// (files and directory entries fsync'ed, SPEC §10), and reject otherwise.

import type { SpilledBody } from './body-store.js';
import type { MailAddress, Recipient, Remembered, Session } from '../mail/types.js';

export interface EnqueueRequest {
  /** Queue id = transaction id, assigned at MAIL. */
  id: string;
  mailFrom: MailAddress;
  /** The envelope after preq: only recipients whose RCPT got 2xx, plus those rules added. */
  rcpts: Recipient[];
  /**
   * The message as spooled: Received:, pending headers, then the client's
   * message; CRLF line ends. With `bodyFile`, only the header block (through
   * its empty line), the body following in that file.
   */
  data: Buffer;
  /** A body too large to be held in memory: `size` bytes of the file at `path`, which the caller removes after enqueue(). */
  bodyFile?: SpilledBody;
  /** The session as it was at end of DATA (a snapshot; the front goes on changing its own). */
  session: Session;
  /**
   * Status remembered for postq and delivery (SPEC §5.4): faccept skips their
   * rules, quarantine keeps the message out of delivery. Null when none.
   */
  txnRemembered: Remembered | null;
  /** Store in quarantine `<name>` instead of the active queue. */
  quarantine?: string;
}

export interface MessageSink {
  /** Resolves once the message is durable (its value, if any, is not used); rejects otherwise. */
  enqueue(req: EnqueueRequest): Promise<unknown>;
  /**
   * A fresh temporary path, beside the spool, where the body of message `id`
   * may be written while it is received; a sink without it gets every
   * message in memory.
   */
  spillPath?(id: string): string;
}
