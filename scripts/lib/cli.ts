// The command line of every TypeScript script, read one way: `--help` (or -h) prints the usage
// and exits 0 before anything else happens; an unknown option, a missing value or a stray
// argument prints what is wrong and the usage line, and exits 2. node:util's parseArgs does the
// parsing; this only turns its errors into those answers instead of a stack trace.
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>;

export interface Cli<O extends Options> {
  /** The name messages start with (`export: …`). */
  name: string;
  /** The whole help text; its first line is the usage line shown with an error. */
  help: string;
  options: O;
  allowPositionals?: boolean;
  argv?: string[];
}

export function parseCli<const O extends Options>(cli: Cli<O>): Parsed<O> {
  const usageLine = cli.help.split('\n')[0]!;
  let parsed;
  try {
    parsed = parseArgs({
      args: cli.argv ?? process.argv.slice(2),
      options: { ...cli.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: cli.allowPositionals ?? false,
      strict: true,
    });
  } catch (error) {
    // Even with a mistake elsewhere on the line, --help is an answer, not a failure.
    if ((cli.argv ?? process.argv.slice(2)).some((arg) => arg === '--help' || arg === '-h')) {
      console.log(cli.help);
      process.exit(0);
    }
    fail(cli.name, (error as Error).message.replace(/\. To specify a positional argument.*$/s, ''), usageLine);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(cli.help);
    process.exit(0);
  }
  return parsed as unknown as Parsed<O>;
}

/** What is wrong, the usage line, exit 2. */
export function fail(name: string, message: string, usageLine: string): never {
  console.error(`${name}: ${message}\n${usageLine}`);
  process.exit(2);
}
