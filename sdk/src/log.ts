// DEBUG=kpi-history:* logs each call's method, path, status and duration (in a browser:
// localStorage.debug = 'kpi-history:*'). Headers and bodies are never logged: they carry tokens
// and secrets.
import createDebug from 'debug';

export const logHttp = createDebug('kpi-history:http');
export const logSql = createDebug('kpi-history:sql');

/** Path and query of a URL: never credentials, which travel in headers. */
export function pathOf(url: string): string {
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
}
