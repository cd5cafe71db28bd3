// PostgREST v16.2's handling of `Authorization: Bearer <jwt>` (src/library/PostgREST/Auth/Jwt.hs):
// three parts, a signature by the configured secret (jose-jwt decodes; `alg: none` and other
// algorithms fail), the claims a plain JSON object, then exp/nbf/iat checked with a 30-second
// skew. The role is the `role` claim, or the anonymous role. Signatures are checked with `jose`.
import { compactVerify, SignJWT } from 'jose';

export type Claims = Record<string, unknown>;

export type JwtVerification = { ok: true; claims: Claims } | JwtRejection;

export interface JwtRejection {
  ok: false;
  status: 401;
  code: 'PGRST301' | 'PGRST303';
  message: string;
}

const ALLOWED_SKEW_SECONDS = 30;
const encoder = new TextEncoder();

/** The verified claims, or PostgREST's 401 answer. */
export async function verifyJwt(token: string, secret: string, now = new Date()): Promise<JwtVerification> {
  const decodeError = (message: string): JwtRejection => ({ ok: false, status: 401, code: 'PGRST301', message });
  const claimsError = (message: string): JwtRejection => ({ ok: false, status: 401, code: 'PGRST303', message });
  if (token === '') return decodeError('Empty JWT is sent in Authorization header');
  const parts = token.split('.').length;
  if (parts !== 3) return decodeError(`Expected 3 parts in JWT; got ${parts}`);
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(token, encoder.encode(secret), { algorithms: ['HS256', 'HS384', 'HS512'] }));
  } catch (error) {
    const name = (error as { code?: string }).code;
    return decodeError(name === 'ERR_JOSE_ALG_NOT_ALLOWED' ? 'Wrong or unsupported encoding algorithm' : 'JWT cryptographic operation failed');
  }
  let claims: unknown;
  try {
    claims = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return claimsError('Parsing claims failed');
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return claimsError('Parsing claims failed');
  const seconds = Math.floor(now.getTime() / 1000);
  const record = claims as Claims;
  const checks: [string, string, (value: number) => boolean, string][] = [
    ['exp', "The JWT 'exp' claim must be a number", (exp) => seconds - ALLOWED_SKEW_SECONDS > exp, 'JWT expired'],
    ['nbf', "The JWT 'nbf' claim must be a number", (nbf) => seconds + ALLOWED_SKEW_SECONDS < nbf, 'JWT not yet valid'],
    ['iat', "The JWT 'iat' claim must be a number", (iat) => seconds + ALLOWED_SKEW_SECONDS < iat, 'JWT issued at future'],
  ];
  for (const [claim, notNumber, invalid, message] of checks) {
    const value = record[claim];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number') return claimsError(notNumber);
    if (invalid(value)) return claimsError(message);
  }
  return { ok: true, claims: record };
}

/** Signs arbitrary claims with HS256, as a token issuer would (tests that need any claims). */
export function signClaims(claims: Claims, secret: string): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(encoder.encode(secret));
}
