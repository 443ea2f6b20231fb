// The context as `ctx::to_string()` shows it (SPEC §4.2): one rendering for
// the guest (ctx::to_string) and the host (fs::dump), which read the session
// from different places but must print the same record.

/** RFC 3339 in UTC without milliseconds, as timestamps print. */
export function timestampText(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface ContextRecordInput {
  stage: string;
  session: {
    id: string;
    clientIp: string;
    clientPort: number;
    serverIp: string;
    serverPort: number;
    serverName: string;
    connectedAtMs: number;
    secured: boolean;
    helo: string | null;
    authid: string | null;
  };
  /** Addresses as text (`''` for the null sender). */
  txn: { id: string; mailFrom: string; mailAtMs: number; rcpts: string[] } | null;
}

export function contextRecord(c: ContextRecordInput): Record<string, unknown> {
  const s = c.session;
  const t = c.txn;
  return {
    stage: c.stage,
    connection_id: s.id,
    client_ip: s.clientIp,
    client_port: s.clientPort,
    server_ip: s.serverIp,
    server_port: s.serverPort,
    server_name: s.serverName,
    connection_timestamp: timestampText(s.connectedAtMs),
    is_secured: s.secured,
    helo: s.helo,
    is_authenticated: s.authid !== null,
    auth_id: s.authid,
    message_id: t?.id ?? null,
    mail_from: t ? t.mailFrom : null,
    mail_timestamp: t ? timestampText(t.mailAtMs) : null,
    rcpt_list: t ? t.rcpts : [],
  };
}
