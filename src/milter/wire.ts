// The milter wire format (libmilter protocol version 6, as Postfix and
// Sendmail speak it): every packet is a 4-byte big-endian length, then one
// command byte, then `length - 1` bytes of data. Strings inside the data are
// NUL-terminated. Here: the command and reply codes, the negotiation flags,
// a streaming packet reader and the packet builders.

/** Commands the MTA sends (SMFIC_*). */
export const CMD = {
  ABORT: 'A',
  BODY: 'B',
  CONNECT: 'C',
  MACRO: 'D',
  BODYEOB: 'E',
  HELO: 'H',
  QUIT_NC: 'K',
  HEADER: 'L',
  MAIL: 'M',
  EOH: 'N',
  OPTNEG: 'O',
  QUIT: 'Q',
  RCPT: 'R',
  DATA: 'T',
  UNKNOWN: 'U',
} as const;

/** Replies and modification requests the milter sends (SMFIR_*). */
export const REPLY = {
  ADDRCPT: '+',
  DELRCPT: '-',
  ACCEPT: 'a',
  REPLBODY: 'b',
  CONTINUE: 'c',
  DISCARD: 'd',
  CHGFROM: 'e',
  ADDHEADER: 'h',
  INSHEADER: 'i',
  CHGHEADER: 'm',
  OPTNEG: 'O',
  QUARANTINE: 'q',
  TEMPFAIL: 't',
  REPLYCODE: 'y',
} as const;

/** Modification actions (SMFIF_*), offered by the MTA and requested at negotiation. */
export const ACTION = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
} as const;

/** Protocol steps the milter can ask the MTA to skip or not to wait a reply for (SMFIP_*). */
export const STEP = {
  NOCONNECT: 0x01,
  NOHELO: 0x02,
  NOMAIL: 0x04,
  NORCPT: 0x08,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
} as const;

/** The no-reply flag of each command that can have one. */
export const NO_REPLY: Readonly<Record<string, number>> = {
  [CMD.CONNECT]: STEP.NR_CONN,
  [CMD.HELO]: STEP.NR_HELO,
  [CMD.DATA]: STEP.NR_DATA,
  [CMD.HEADER]: STEP.NR_HDR,
  [CMD.EOH]: STEP.NR_EOH,
  [CMD.BODY]: STEP.NR_BODY,
  [CMD.UNKNOWN]: STEP.NR_UNKN,
};

export const PROTOCOL_VERSION = 6;

/** Postfix sends body chunks of at most 64 KiB; macros and headers are small. */
export const MAX_PACKET = 256 * 1024;
/** REPLBODY chunks we send: the size Postfix itself uses. */
export const BODY_CHUNK = 65535;

export interface Packet {
  cmd: string;
  data: Buffer;
}

export class MilterWireError extends Error {}

/**
 * Splits a byte stream into packets. A zero or oversized length cannot be
 * resynchronised after, so it is an error that ends the connection.
 */
export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPacket = MAX_PACKET) {}

  /** The complete packets in the bytes received so far. */
  push(chunk: Buffer): Packet[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Packet[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len === 0) throw new MilterWireError('packet of length 0');
      if (len > this.maxPacket) throw new MilterWireError(`packet of ${len} bytes exceeds ${this.maxPacket}`);
      if (this.buf.length < 4 + len) break;
      out.push({ cmd: String.fromCharCode(this.buf[4]!), data: Buffer.from(this.buf.subarray(5, 4 + len)) });
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
}

/** One packet, ready to write. */
export function packet(cmd: string, ...parts: Buffer[]): Buffer {
  const data = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length + 1, 0);
  head[4] = cmd.charCodeAt(0);
  return Buffer.concat([head, data]);
}

/** A NUL-terminated string. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

export function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** The NUL-terminated strings of a packet's data; null when the last one is not terminated. */
export function cstrings(data: Buffer, from = 0): string[] | null {
  const out: string[] = [];
  let pos = from;
  while (pos < data.length) {
    const nul = data.indexOf(0, pos);
    if (nul < 0) return null;
    out.push(data.toString('utf8', pos, nul));
    pos = nul + 1;
  }
  return out;
}
