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

// An alert is a few hundred bytes: anything much bigger is refused before it is read whole.
const MAX_BODY_BYTES = 64 * 1024;

// A receiver: reads at most MAX_BODY_BYTES, verifies the signature, answers 2xx at once, and
// handles each alert once. Delivery is at least once, so the same alert can come again: it is
// known by the `id` inside the signed body — never by a header, which anyone replaying a signed
// request could change. Keep `seen` in your database in production.
export function createAlertReceiver(secret: string, onAlert: (alert: { id: string; kpi: string; as_of: string }) => void) {
  const seen = new Set<string>();
  return createServer((request, response) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        response.writeHead(413, { Connection: 'close' }).end(); // a 4xx: the sender does not retry it
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (!verifyAlertSignature(secret, request.headers['kpi-signature'] as string | undefined, body)) {
        response.writeHead(401).end(); // a 4xx: the sender does not retry it
        return;
      }
      const alert = JSON.parse(body) as { id: string; kpi: string; as_of: string };
      if (!seen.has(alert.id)) {
        seen.add(alert.id);
        onAlert(alert);
      }
      response.writeHead(204).end();
    });
  });
}
