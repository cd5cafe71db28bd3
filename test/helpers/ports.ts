import { createServer } from 'node:net';

/** The first port from `start` on that nothing listens on at 127.0.0.1. */
export async function freePort(start: number): Promise<number> {
  const isFree = (port: number) =>
    new Promise<boolean>((resolve) => {
      const probe = createServer()
        .once('error', () => resolve(false))
        .once('listening', () => probe.close(() => resolve(true)))
        .listen(port, '127.0.0.1');
    });
  let port = start;
  while (!(await isFree(port))) port += 1;
  return port;
}
