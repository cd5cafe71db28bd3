// A fetch that records each request and answers with a response scripted by the test, in the
// form PostgREST documents (JSON bodies, {code, message, details, hint} errors, text/csv).
export interface RecordedRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: string | null;
}

export type Script = (request: RecordedRequest) => Response | Promise<Response>;

export function recordingFetch(script: Script) {
  const requests: RecordedRequest[] = [];
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const recorded: RecordedRequest = {
      method: request.method,
      url: new URL(request.url),
      headers: Object.fromEntries(request.headers),
      body: request.body ? await request.text() : null,
    };
    requests.push(recorded);
    return script(recorded);
  };
  return { fetch: fetchImpl as typeof fetch, requests };
}

export const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } });

export const postgrestError = (status: number, code: string, message: string, hint: string | null = null) =>
  json({ code, message, details: null, hint }, status);
