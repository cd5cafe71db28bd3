// PostgREST v16.2's handling of `Authorization: Bearer <jwt>` (src/library/PostgREST/Auth/Jwt.hs):
// three parts, a signature by the configured secret, the claims a plain JSON object, then
// exp/nbf/iat (numbers, 30 seconds of skew) and aud (a string or an array of strings) checked.
// A string secret is one HS256 key (Config.hs `parseSecret`): a token signed with HS384 or HS512,
// or with another secret, is one "none of the keys was able to decode" (jose-jwt's KeyError,
// Error.hs `JwtDecodeErr`). The role is the `role` claim (Auth/Jwt.hs `parseClaims`: a string as
// is, any other JSON value as its JSON text), or the anonymous role. Signatures are checked with `jose`.
import { compactVerify, SignJWT } from 'jose';

export type Claims = Record<string, unknown>;

export type JwtVerification = { ok: true; claims: Claims } | JwtRejection;

export interface JwtRejection {
  ok: false;
  status: 401;
  code: 'PGRST301' | 'PGRST303';
  message: string;
  details: string | null;
}

const ALLOWED_SKEW_SECONDS = 30;
const encoder = new TextEncoder();

/** The verified claims, or PostgREST's 401 answer. */
export async function verifyJwt(token: string, secret: string, now = new Date()): Promise<JwtVerification> {
  const decodeError = (message: string, details: string | null = null): JwtRejection => ({ ok: false, status: 401, code: 'PGRST301', message, details });
  const claimsError = (message: string): JwtRejection => ({ ok: false, status: 401, code: 'PGRST303', message, details: null });
  if (token === '') return decodeError('Empty JWT is sent in Authorization header');
  const parts = token.split('.').length;
  if (parts !== 3) return decodeError(`Expected 3 parts in JWT; got ${parts}`);
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(token, encoder.encode(secret), { algorithms: ['HS256'] }));
  } catch (error) {
    const name = (error as { code?: string }).code;
    // The one HS256 key cannot decode an HMAC token of another secret or another HS algorithm.
    if (name === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || (name === 'ERR_JOSE_ALG_NOT_ALLOWED' && /^HS(256|384|512)$/.test(protectedAlg(token) ?? ''))) {
      return decodeError('No suitable key or wrong key type', 'None of the keys was able to decode the JWT');
    }
    if (name === 'ERR_JOSE_ALG_NOT_ALLOWED') return decodeError('Wrong or unsupported encoding algorithm');
    return decodeError('JWT cryptographic operation failed');
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
  // No jwt-aud is configured: any string, and any array of strings, is in the audience.
  const aud = record.aud;
  if (aud !== undefined && aud !== null && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    return claimsError("The JWT 'aud' claim must be a string or an array of strings");
  }
  return { ok: true, claims: record };
}

/** The role a token asks for: its `role` claim, a string as is and any other JSON value as its JSON text; none: anonymous. */
export function roleClaim(claims: Claims): string | null {
  const role = claims.role;
  if (role === undefined) return null;
  return typeof role === 'string' ? role : JSON.stringify(role);
}

function protectedAlg(token: string): string | null {
  try {
    return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { alg?: string }).alg ?? null;
  } catch {
    return null;
  }
}

/** Signs arbitrary claims with HS256, as a token issuer would (tests that need any claims). */
export function signClaims(claims: Claims, secret: string): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(encoder.encode(secret));
}
