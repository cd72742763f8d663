#!/bin/sh
# Builds one libFuzzer target with clang (ASan + UBSan) and runs it for a
# bounded time: part of the normal test suite when clang is available.
#   run-fuzz.sh SOURCE_ROOT BUILD_DIR TARGET SECONDS
set -eu
src=$1 build=$2 target=$3 seconds=$4

if ! command -v clang >/dev/null 2>&1; then
        echo "clang is not installed: skipping the $target fuzzer"
        exit 77
fi
out="$build/fuzz"
mkdir -p "$out"
common="$src/src/parse.c $src/src/util.c $src/src/json.c $src/src/utf8.c"
case $target in
request) sources="$common $src/src/request.c $src/src/config.c $src/src/pragmas.c" libs="$(pkg-config --libs inih)" ;;
json)    sources="$common" libs="" ;;
*)       echo "unknown fuzz target $target"; exit 2 ;;
esac
if ! clang -std=c11 -D_GNU_SOURCE -DSQLVIGIL_VERSION='"fuzz"' -g -O1 \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I"$src/src" "$src/tests/fuzz/fuzz-$target.c" $sources $libs -o "$out/fuzz-$target" 2>"$out/fuzz-$target.log"; then
        if grep -q "libclang_rt.fuzzer\|cannot find.*fuzzer" "$out/fuzz-$target.log"; then
                echo "clang has no libFuzzer runtime (Debian: libclang-rt-14-dev): skipping"
                exit 77
        fi
        cat "$out/fuzz-$target.log"
        exit 1
fi
corpus="$out/corpus-$target"
rm -rf "$corpus"
mkdir -p "$corpus"
cp "$src/tests/fuzz/corpus-$target/"* "$corpus/"
# -max_total_time bounds the run; -rss_limit_mb and -timeout catch runaways.
exec "$out/fuzz-$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
        -max_len=4096 -print_final_stats=1 "$corpus"
