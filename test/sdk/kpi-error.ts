import { expect } from 'vitest';
import { KpiHistoryError } from '../../sdk/src/errors.js';

/** Awaits a call that must fail, and returns its KpiHistoryError (any other outcome fails the test). */
export async function failure(promise: Promise<unknown>): Promise<KpiHistoryError> {
  const outcome = await promise.then(
    () => new Error('expected a KpiHistoryError, but the call succeeded'),
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(KpiHistoryError);
  return outcome as KpiHistoryError;
}
