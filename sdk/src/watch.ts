// Follows the change stream (GET /v1/stream on the worker) from a browser or any fetch: the token
// goes in the Authorization header, which EventSource cannot send, so this reads the
// Server-Sent Events itself; after a dropped connection it reconnects with Last-Event-ID and
// resumes where it stopped, without loss or duplicates. Browser-safe (fetch, TextDecoder).
import { KpiHistoryError } from './errors.js';
import { logHttp, pathOf } from './log.js';
import type { KpiChange } from './results.js';

export interface WatchOptions {
  /** Called for each change, in order; the stream waits for a returned promise. */
  onChange: (change: KpiChange) => void | Promise<void>;
  /** Called when a connection fails and another will be tried; a refusal (4xx) ends the watch instead. */
  onError?: (error: KpiHistoryError) => void;
  /** Aborting it ends the watch. */
  signal?: AbortSignal;
  /** Resume after this cursor (a change's `cursor`); without it, the stream starts now. */
  after?: string;
  /** Wait before reconnecting (default 1 s, doubling to 30 s while connections keep failing). */
  retryMs?: number;
}

interface WatchConnection {
  streamUrl: string;
  headers: Record<string, string>;
  fetch: typeof fetch;
}

/** One Server-Sent Event: its type (default "message"), id, data lines joined, and a comment line. */
export interface ServerSentEvent {
  event: string;
  id?: string;
  data: string;
  comment?: string;
}

/** The events of an SSE body, as they arrive (blocks end with an empty line). */
export async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: ServerSentEvent = { event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) event.comment = line.slice(1).trim();
        else if (line.startsWith('event:')) event.event = line.slice(6).trim();
        else if (line.startsWith('id:')) event.id = line.slice(3).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      event.data = data.join('\n');
      yield event;
    }
  }
}

/** Hands each `event: change` to `onChange`; an `event: error` (a refusal after the headers) throws. */
async function readEvents(body: ReadableStream<Uint8Array>, onChange: (change: KpiChange) => Promise<void>): Promise<void> {
  for await (const event of serverSentEvents(body)) {
    if (event.event === 'change') await onChange(JSON.parse(event.data) as KpiChange);
    else if (event.event === 'error') {
      const refusal = JSON.parse(event.data) as { code: string; message: string };
      throw new KpiHistoryError({ code: refusal.code as KpiHistoryError['code'], message: refusal.message });
    }
  }
}

export async function watchChanges(connection: WatchConnection, options: WatchOptions): Promise<void> {
  let cursor = options.after;
  const baseRetry = options.retryMs ?? 1000;
  let retry = baseRetry;
  while (!options.signal?.aborted) {
    try {
      const response = await connection.fetch(connection.streamUrl, {
        headers: { ...connection.headers, Accept: 'text/event-stream', ...(cursor ? { 'Last-Event-ID': cursor } : {}) },
        signal: options.signal,
      });
      logHttp('GET %s %d (stream)', pathOf(connection.streamUrl), response.status);
      if (!response.ok) {
        const body = (await response.json().catch(() => ({}))) as { code?: string; message?: string };
        const error = new KpiHistoryError({
          code: (body.code as KpiHistoryError['code']) ?? (response.status === 401 ? 'UNAUTHORIZED' : 'UNEXPECTED_RESPONSE'),
          message: body.message ?? `the stream answered ${response.status}`,
          status: response.status,
        });
        if (response.status === 429) {
          // Too many streams at once: asking again later may work, not sooner than Retry-After.
          options.onError?.(error);
          const seconds = Number(response.headers.get('retry-after'));
          await new Promise((resolve) => setTimeout(resolve, Math.min(300, Number.isFinite(seconds) && seconds > 0 ? seconds : 5) * 1000));
          continue;
        }
        // A refusal will not change by asking again; a server error may.
        if (response.status < 500) throw error;
        options.onError?.(error);
      } else {
        await readEvents(response.body!, async (change) => {
          await options.onChange(change);
          cursor = change.cursor;
          retry = baseRetry;
        });
        if (options.signal?.aborted) return;
        options.onError?.(new KpiHistoryError({ code: 'NETWORK_ERROR', message: 'the stream ended; reconnecting' }));
      }
    } catch (error) {
      if (options.signal?.aborted) return;
      if (error instanceof KpiHistoryError && (error.status ?? 0) < 500 && error.code !== 'NETWORK_ERROR') throw error;
      options.onError?.(
        error instanceof KpiHistoryError ? error : new KpiHistoryError({ code: 'NETWORK_ERROR', message: `the stream dropped: ${(error as Error).message}`, cause: error }),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, retry));
    retry = Math.min(30_000, retry * 2);
  }
}
