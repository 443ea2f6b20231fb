// `host:port` as written in server.metrics.listen ("127.0.0.1:9464", "[::1]:9464").

export function splitHostPort(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`server.metrics.listen: expected host:port, got "${text}"`);
  return { host: m[1]!, port };
}
