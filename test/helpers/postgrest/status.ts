// The HTTP status PostgREST v16.2 answers for a database error: `mapSQLtoHTTP` in
// src/library/PostgREST/Error.hs, case by case and in its order. `authenticated`: the request's
// role is not the anonymous role (App.hs passes `authRole /= configDbAnonRole`).

export function httpStatusFor(sqlstate: string, authenticated: boolean, message = ''): number {
  const starts = (prefix: string) => sqlstate.startsWith(prefix);
  if (starts('08')) return 503; // connection exception
  if (starts('09')) return 500; // triggered action exception
  if (starts('0L') || starts('0P')) return 403; // invalid grantor, invalid role specification
  if (sqlstate === '23503' || sqlstate === '23505') return 409; // foreign key, unique violation
  if (sqlstate === '25006') return 405; // read-only transaction
  if (sqlstate === '21000') return message.endsWith('requires a WHERE clause') ? 400 : 500; // cardinality
  if (sqlstate === '22023') return message.startsWith('role') && message.endsWith('does not exist') ? 401 : 400;
  if (starts('25')) return 500; // invalid transaction state
  if (starts('28')) return 403; // invalid authorization specification
  if (starts('2D') || starts('38') || starts('39') || starts('3B') || starts('40')) return 500;
  if (sqlstate === '53400') return 500; // configuration limit exceeded
  if (starts('53')) return 503; // insufficient resources
  if (starts('54') || starts('55')) return 500;
  if (sqlstate === '57P01') return 503; // admin shutdown
  if (starts('57') || starts('58') || starts('F0') || starts('HV') || starts('XX')) return 500;
  if (sqlstate === 'P0001') return 400; // RAISE's default
  if (starts('P0')) return 500; // other PL/pgSQL errors
  if (sqlstate === '42883') return message.startsWith('function xmlagg(') ? 406 : 404; // undefined function
  if (sqlstate === '42P01') return 404; // undefined table
  if (sqlstate === '42P17') return 500; // infinite recursion
  if (sqlstate === '42501') return authenticated ? 403 : 401; // insufficient privilege
  if (starts('PT')) {
    const status = Number(sqlstate.slice(2));
    return /^\d{3}$/.test(sqlstate.slice(2)) && status >= 100 && status <= 999 ? status : 500;
  }
  // 'PGRST' is answered from its MESSAGE and DETAIL (see the replay); everything else is 400.
  return 400;
}
