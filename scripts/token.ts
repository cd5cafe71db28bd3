// Prints a JWT for trying the API with curl: HS256, signed with PGRST_JWT_SECRET from the
// environment (the secret PostgREST verifies with; never stored in the repository).
//
//   npm run --silent token -- <tenant-uuid> [<tenant-uuid> …] [--sub NAME] [--ttl SECONDS]
//   curl -H "Authorization: Bearer $(npm run --silent token -- <uuid>)" localhost:3000/kpi_history
import { createHmac } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

export interface TokenOptions {
  secret: string;
  tenantIds: string[];
  sub?: string;
  ttlSeconds?: number;
  now?: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const base64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');

/** A PostgREST JWT for the "authenticated" role and the given tenants. */
export function mintToken({ secret, tenantIds, sub = 'kpi-history-dev', ttlSeconds = 3600, now = new Date() }: TokenOptions): string {
  if (secret.length < 32) {
    throw new Error(`PGRST_JWT_SECRET must be at least 32 characters (it has ${secret.length}); PostgREST refuses shorter ones.`);
  }
  if (tenantIds.length === 0 || !tenantIds.every((id) => UUID.test(id))) {
    throw new Error('give one or more tenant ids (uuids), e.g. 00000000-0000-4000-a000-00000000ac01');
  }
  const iat = Math.floor(now.getTime() / 1000);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(
    JSON.stringify({ role: 'authenticated', sub, tenant_ids: tenantIds.map((id) => id.toLowerCase()), iat, exp: iat + ttlSeconds }),
  );
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { sub: { type: 'string' }, ttl: { type: 'string', default: '3600' } },
  });
  const secret = process.env.PGRST_JWT_SECRET;
  if (!secret) {
    console.error('token: set PGRST_JWT_SECRET (the secret PostgREST verifies JWTs with; see .env.example).');
    process.exit(1);
  }
  try {
    console.log(mintToken({ secret, tenantIds: positionals, sub: values.sub, ttlSeconds: Number(values.ttl) }));
  } catch (error) {
    console.error(`token: ${(error as Error).message}`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main();
