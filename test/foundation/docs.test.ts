// The README is the front door and docs/ the reference: every relative link in them points at a
// file (and heading) that exists, and every `npm run …` they name is a script of package.json.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';

const DOCUMENTS = ['README.md', ...readdirSync(join(projectRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const scripts = Object.keys(JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')).scripts as Record<string, string>);
const read = (file: string) => readFileSync(join(projectRoot, file), 'utf8');

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

describe('README.md and docs/', () => {
  it('the README is a front door: the two commands on its first screen, the reference in docs/', () => {
    const readme = read('README.md');
    const firstScreen = readme.split('\n').slice(0, 40).join('\n');
    expect(firstScreen).toContain('npm start');
    expect(firstScreen).toContain('npm test');
    expect(readme.length).toBeLessThan(9000);
    for (const doc of DOCUMENTS.filter((d) => d !== 'README.md')) expect(readme, doc).toContain(`(${doc})`);
  });

  it.each(DOCUMENTS)('%s: every relative link resolves to a file, and to a heading when it names one', (file) => {
    const text = read(file);
    const links = [...text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((href) => !/^[a-z]+:/.test(href));
    for (const href of links) {
      const [path, hash] = href.split('#');
      const target = path ? normalize(join(dirname(file), path)) : file;
      expect(existsSync(join(projectRoot, target)), `${file}: ${href}`).toBe(true);
      if (hash && target.endsWith('.md')) {
        const headings = [...read(target).matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1]!));
        expect(headings, `${file}: ${href}`).toContain(hash);
      }
    }
  });

  it.each(DOCUMENTS)('%s: every `npm run …` names a script of package.json', (file) => {
    const named = [...read(file).matchAll(/npm run (?:--silent )?([\w:-]+)/g)].map((m) => m[1]!);
    for (const name of named) expect(scripts, `${file}: npm run ${name}`).toContain(name);
  });

  it('every doc starts with its title and what a reader comes for', () => {
    for (const doc of DOCUMENTS.filter((d) => d !== 'README.md')) {
      const [title, blank, purpose] = read(doc).split('\n');
      expect(title, doc).toMatch(/^# \S/);
      expect(blank, doc).toBe('');
      expect(purpose!.length, doc).toBeGreaterThan(40);
    }
  });
});
