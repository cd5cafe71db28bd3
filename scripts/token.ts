// Prints a JWT for trying the API with curl: HS256, signed with PGRST_JWT_SECRET from the
// environment (the secret PostgREST verifies with; never stored in the repository).
//
//   npm run --silent token -- <tenant-uuid> [<tenant-uuid> …] [--admin] [--sub NAME] [--ttl SECONDS]
//   (--admin: a tenant admin of those tenants, who may define custom KPIs)
//   curl -H "Authorization: Bearer $(npm run --silent token -- <uuid>)" localhost:3000/kpi_history
import { SignJWT } from 'jose';
import { pathToFileURL } from 'node:url';
import { parseCli } from './lib/cli.js';

export interface TokenOptions {
  secret: string;
  tenantIds: string[];
  sub?: string;
  ttlSeconds?: number;
  now?: Date;
  /** Also an admin of these tenants: "tenant_roles": {"<id>": "kpi_admin"}. */
  admin?: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * RFC 7519 §2 StringOrURI: any string, but one containing ":" MUST be a URI. PostgREST v16.2
 * itself does not check it (jose-jwt hands it the claims as plain JSON), but v12 refused such a
 * token with 401 and other JWT verifiers on the way (gateways, Supabase Auth) may: a development
 * token should be one every verifier accepts.
 */
function isStringOrUri(value: string): boolean {
  if (!value.includes(':')) return true;
  // RFC 3986: a scheme (a letter, then letters, digits, + - .), ':', then only URI characters,
  // with every % starting an escape of two hex digits.
  return /^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/.test(value);
}

/** A PostgREST JWT (HS256, signed with jose) for the "authenticated" role and the given tenants. */
export async function mintToken({ secret, tenantIds, sub = 'kpi-history-dev', ttlSeconds = 3600, now = new Date(), admin = false }: TokenOptions): Promise<string> {
  if (secret.length < 32) {
    throw new Error(`PGRST_JWT_SECRET must be at least 32 characters (it has ${secret.length}); PostgREST refuses shorter ones.`);
  }
  if (tenantIds.length === 0 || !tenantIds.every((id) => UUID.test(id))) {
    throw new Error('give one or more tenant ids (uuids), e.g. 00000000-0000-4000-a000-00000000ac01');
  }
  if (sub === '' || !isStringOrUri(sub)) {
    throw new Error(`--sub ${JSON.stringify(sub)} is not a JWT StringOrURI: a subject containing ":" must be a URI (e.g. "urn:kpi:user:42" or "user-42")`);
  }
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new Error(`--ttl must be a whole number of seconds above 0 (got ${ttlSeconds}); PostgREST refuses an expired token`);
  }
  const iat = Math.floor(now.getTime() / 1000);
  const ids = tenantIds.map((id) => id.toLowerCase());
  const roles = admin ? { tenant_roles: Object.fromEntries(ids.map((id) => [id, 'kpi_admin'])) } : {};
  return new SignJWT({ role: 'authenticated', tenant_ids: ids, ...roles })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}

async function main(): Promise<void> {
  const { values, positionals } = parseCli({
    name: 'token',
    help: `usage: npm run --silent token -- <tenant-uuid> [<tenant-uuid> …] [--admin] [--sub NAME] [--ttl SECONDS]

Prints a JWT for the API (HS256, role authenticated, tenant_ids the uuids given), signed with
PGRST_JWT_SECRET from the environment. --admin: a tenant admin of those tenants (may define custom
KPIs). --sub: the subject (default kpi-history-cli). --ttl: seconds until it expires (default 3600).
  curl -H "Authorization: Bearer $(npm run --silent token -- <uuid>)" localhost:3000/kpi_history`,
    allowPositionals: true,
    options: { sub: { type: 'string' }, ttl: { type: 'string', default: '3600' }, admin: { type: 'boolean', default: false } },
  });
  const secret = process.env.PGRST_JWT_SECRET;
  if (!secret) {
    console.error('token: set PGRST_JWT_SECRET (the secret PostgREST verifies JWTs with; see .env.example).');
    process.exit(1);
  }
  try {
    console.log(await mintToken({ secret, tenantIds: positionals, sub: values.sub, ttlSeconds: Number(values.ttl), admin: values.admin }));
  } catch (error) {
    console.error(`token: ${(error as Error).message}`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
