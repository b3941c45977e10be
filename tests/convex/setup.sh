#!/bin/sh
# setup.sh DIR -- install the convex npm package (the real CLI and
# ConvexHttpClient) into DIR once. Exit 77 when node or npm is missing.
set -eu
dir=$1
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    echo "node/npm not installed: skipping the convex CLI tests" >&2
    exit 77
}
mkdir -p "$dir"
[ -f "$dir/package.json" ] || printf '{"name":"baton-convex-check","private":true}\n' > "$dir/package.json"
[ -x "$dir/node_modules/.bin/convex" ] && exit 0
cd "$dir"
npm install --no-audit --no-fund --loglevel=error convex@1.48.0 >&2
