# The command line of every shell script, read one way (sourced; scripts/lib/cli.ts is the same
# for the TypeScript ones). Set USAGE (its first line the usage line) and CLI_NAME, then:
#   cli_help "$@"                    --help or -h anywhere: the usage, exit 0, before anything runs
#   cli_refuse "--a --b" "$@"        an option not listed: what is wrong and the usage line, exit 2
#   cli_fail "message"               the same for any other mistake

cli_help() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      -h | --help) printf '%s\n' "$USAGE"; exit 0 ;;
    esac
  done
}

cli_fail() {
  printf '%s: %s\n%s\n' "$CLI_NAME" "$1" "${USAGE%%$'\n'*}" >&2
  exit 2
}

cli_refuse() {
  local allowed=" $1 " arg
  shift
  for arg in "$@"; do
    case "$arg" in
      --) break ;;
      -*) [[ "$allowed" == *" ${arg%%=*} "* ]] || cli_fail "unknown option: $arg" ;;
    esac
  done
}
