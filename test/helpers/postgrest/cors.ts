// PostgREST v16.2's CORS (src/library/PostgREST/Cors.hs: a wai-cors policy), for the replay served
// over HTTP to a browser. A request without Origin gets no CORS headers. With Origin:
// - a preflight (OPTIONS + Access-Control-Request-Method) is answered here, 200 and empty, never
//   reaching the API: any origin (`*`) or, with server-cors-allowed-origins, the origin itself and
//   Allow-Credentials; every requested header is allowed (Authorization, then those asked for, then
//   wai-cors' simple headers);
// - any other request goes on to the API, and its answer gets Allow-Origin and the nine exposed
//   headers (so a browser cannot read Content-Disposition, for one);
// - an origin not in the list gets nothing added (corsIgnoreFailures): the browser refuses.
// The header values are those test/spec/Feature/CorsSpec.hs expects.
import type { PostgrestConfig } from './config.js';

const METHODS = 'GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD';
const SIMPLE_HEADERS = ['Accept', 'Accept-Language', 'Content-Language'];
const EXPOSED = 'Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit';
const ONE_DAY = String(60 * 60 * 24);

export type CorsOutcome =
  /** Answer now with these headers, status 200 and no body (an accepted preflight). */
  | { preflight: true; headers: Record<string, string> }
  /** Let the API answer, adding these headers to its answer (none: not a CORS request, or refused). */
  | { preflight: false; headers: Record<string, string> };

/** What the CORS middleware does with a request; `headers` are the request's, names lowercased. */
export function corsFor(config: PostgrestConfig, method: string, headers: Record<string, string>): CorsOutcome {
  const origin = headers.origin;
  if (origin === undefined) return { preflight: false, headers: {} };
  const listed = config.corsAllowedOrigins.length > 0;
  if (listed && !config.corsAllowedOrigins.includes(origin)) return { preflight: false, headers: {} };
  const allow: Record<string, string> = listed
    ? { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true' }
    : { 'access-control-allow-origin': '*' };
  const requestMethod = headers['access-control-request-method'];
  if (method.toUpperCase() === 'OPTIONS' && requestMethod !== undefined) {
    // A method outside the policy fails the preflight, and a failure is ignored: no headers.
    if (!METHODS.split(', ').includes(requestMethod)) return { preflight: false, headers: {} };
    const asked = (headers['access-control-request-headers'] ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter(Boolean);
    return {
      preflight: true,
      headers: {
        ...allow,
        'access-control-allow-methods': METHODS,
        'access-control-allow-headers': ['Authorization', ...asked, ...SIMPLE_HEADERS].join(', '),
        'access-control-max-age': ONE_DAY,
      },
    };
  }
  return { preflight: false, headers: { ...allow, 'access-control-expose-headers': EXPOSED } };
}
