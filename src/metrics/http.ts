// The `/metrics` endpoint: a plain HTTP server on `server.metrics.listen`
// answering GET /metrics with the exposition text, 404 elsewhere. Scrapes
// never touch SMTP state: the text comes from the metrics registries only.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from './listen.js';

export interface MetricsServer {
  address: { host: string; port: number };
  close(): Promise<void>;
}

export async function serveMetrics(listen: string, render: () => Promise<{ contentType: string; body: string }>): Promise<MetricsServer> {
  const { host, port } = splitHostPort(listen);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  const a = server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
