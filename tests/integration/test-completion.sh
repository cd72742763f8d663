#!/bin/bash
# The bash completion for sqlvigilctl offers commands, their arguments and
# options (skipped, 77, without bash-completion).
set -u
main=/usr/share/bash-completion/bash_completion
[ -r "$main" ] || { echo "bash-completion is not installed: skipping"; exit 77; }
# shellcheck disable=SC1090
. "$main"
# shellcheck disable=SC1090
. "$1"

complete_words() {
        COMP_WORDS=("$@")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="${COMP_WORDS[*]}"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        _sqlvigilctl
        echo "${COMPREPLY[*]}"
}

fail=0
expect() {
        local want=$1 got
        shift
        got=$(complete_words "$@")
        if [ "$got" != "$want" ]; then
                echo "sqlvigilctl $*: got '$got', want '$want'"
                fail=1
        fi
}
expect "config checkpoint check" sqlvigilctl c
expect "passive full restart truncate" sqlvigilctl checkpoint ""
expect "truncate" sqlvigilctl -i x checkpoint t
expect "quick integrity" sqlvigilctl check ""
expect "" sqlvigilctl status ""
expect "backups backup" sqlvigilctl back
expect "reload restore" sqlvigilctl re
expect "--json" sqlvigilctl --j
expect "vacuum" sqlvigilctl --json v
# Options after the command, as sqlvigilctl takes them there too.
expect "--json" sqlvigilctl stats --j
expect "--timeout" sqlvigilctl -i x health --ti
expect "" sqlvigilctl stats --json ""
expect "passive full restart truncate" sqlvigilctl --json checkpoint ""
[ $fail = 0 ] && echo "ok: completion"
exit $fail
