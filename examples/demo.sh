#!/bin/sh
# The point of viasock in one command: call a slow-starting tool directly,
# then through `viasock run` several times, and print how long each took.
set -eu
cd "$(dirname "$0")/.."
echo "Building viasock (release; the first build takes a few minutes)..."
# Where cargo put it, whatever the target directory (CARGO_TARGET_DIR).
viasock=$(cargo build --release --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/viasock\)".*/\1/p' | tail -n 1)
[ -x "$viasock" ] || { echo "demo: the build did not give a viasock binary" >&2; exit 1; }
echo
tool=$PWD/examples/slow-upper
state=$(mktemp -d)
export VIASOCK_DIR="$state/state"
trap '"$viasock" kill --all --force >/dev/null 2>&1; rm -rf "$state"' EXIT

now() { date +%s%N; }
timed() { # LABEL COMMAND...: run COMMAND on one line of input, print time and output
    label=$1; shift
    t0=$(now)
    out=$(echo "hello from viasock" | "$@")
    t1=$(now)
    printf '%-28s %8.3f s   %s\n' "$label" "$(awk "BEGIN{print ($t1 - $t0) / 1e9}")" "$out"
}

echo "examples/slow-upper loads for 2 s, then upper-cases lines."
echo
timed "direct call" "$tool"
timed "viasock run (cold)" "$viasock" run "$tool"
for i in 1 2 3 4 5; do
    timed "viasock run (warm #$i)" "$viasock" run "$tool"
done
timed "cat, for comparison" cat
echo
echo "The server keeps running for 60 s after the last call (-W to change);"
echo "this demo stops it now."
