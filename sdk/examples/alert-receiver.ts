import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

// Checks KPI-Signature ("t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>") with the
// shared secret, and refuses a signature older than `toleranceSeconds` (a replayed request).
export function verifyAlertSignature(secret: string, header: string | undefined, rawBody: string, toleranceSeconds = 300): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!match) return false;
  const [, t, v1] = match;
  if (Math.abs(Date.now() / 1000 - Number(t)) > toleranceSeconds) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1!, 'hex'));
}

// A receiver: verifies, answers 2xx at once, and handles each alert once (delivery is at least
// once, so the same KPI-Alert-Id can come again). Keep `seen` in your database in production.
export function createAlertReceiver(secret: string, onAlert: (alert: { id: string; kpi: string; as_of: string }) => void) {
  const seen = new Set<string>();
  return createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      if (!verifyAlertSignature(secret, request.headers['kpi-signature'] as string | undefined, body)) {
        response.writeHead(401).end(); // a 4xx: the sender does not retry it
        return;
      }
      const id = String(request.headers['kpi-alert-id']);
      if (!seen.has(id)) {
        seen.add(id);
        onAlert(JSON.parse(body));
      }
      response.writeHead(204).end();
    });
  });
}
