// The closing line of `npm test`: 'tests: N passed, N failed, N skipped', from vitest's JSON report.
// A file that failed before its tests could run (a beforeAll that threw, an import error) counts
// each of its tests that did not pass as failed — at least one — never as skipped.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export function summarize(report) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const file of report.testResults ?? []) {
    const results = file.assertionResults ?? [];
    const filePassed = results.filter((r) => r.status === 'passed').length;
    const fileFailed = results.filter((r) => r.status === 'failed').length;
    const fileOther = results.length - filePassed - fileFailed;
    passed += filePassed;
    if (file.status === 'failed') {
      failed += Math.max(1, fileFailed + fileOther);
    } else {
      failed += fileFailed;
      skipped += fileOther;
    }
  }
  return { passed, failed, skipped };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { passed, failed, skipped } = summarize(JSON.parse(readFileSync(process.argv[2], 'utf8')));
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
}
