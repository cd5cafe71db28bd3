// The replay behind a real HTTP socket on 127.0.0.1, for clients that cannot take an injected
// fetch: curl in the smoke script, a browser (with PostgREST's CORS, ./cors.ts). Each request is
// answered by `replay.request`.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { corsFor } from './cors.js';
import type { Replay } from './replay.js';

export async function serveReplay(replay: Replay, options: { port?: number } = {}): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = Object.fromEntries(
      Object.entries(req.headers).flatMap(([name, value]) => (value === undefined ? [] : [[name, Array.isArray(value) ? value.join(', ') : value]])),
    );
    const cors = corsFor(replay.config, req.method ?? 'GET', headers);
    if (cors.preflight) {
      res.writeHead(200, cors.headers);
      res.end();
      return;
    }
    try {
      const answer = await replay.request({
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers,
        body: chunks.length ? Buffer.concat(chunks).toString('utf8') : null,
      });
      res.writeHead(answer.status, { ...answer.headers, ...cors.headers });
      res.end(answer.status === 204 || req.method === 'HEAD' ? undefined : answer.text);
    } catch (error) {
      // Something the replay refuses to imitate: fail loudly, never pass for PostgREST.
      res.writeHead(599, { 'content-type': 'text/plain' });
      res.end(`replay: ${(error as Error).message}`);
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Open keep-alive and streaming connections would hold close() forever.
        server.closeAllConnections();
      }),
  };
}
