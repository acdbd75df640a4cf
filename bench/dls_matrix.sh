#!/bin/sh
# The runs behind BENCHMARKS.md: dls at 1,000 and 100,000 phones, SQLite and PostgreSQL,
# 1 and 2 workers; each run measures nginx and bare aiohttp beside dls (dls_files.py).
#
# dls is measured from a snapshot of one commit (git archive of $DLS_REV, default HEAD)
# put first on PYTHONPATH, so edits in the working tree during the ~2 hours cannot change
# the code between runs. DLS_REV=worktree measures the working tree as it is.
# Arguments name the runs to do (e.g. "sqlite-1k-w1 pg-1k-w1"); none means all eight.
# Results: bench/results/dls-*.json and a log per run; tables: bench/dls_summary.py.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG=${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
REV=${DLS_REV:-HEAD}
mkdir -p bench/results
if [ "$REV" != worktree ]; then
    SHA=$(git rev-parse --short "$REV")
    SNAP=$(mktemp -d "/tmp/dls-snapshot-$SHA-XXXX")
    trap 'rm -rf "$SNAP"' EXIT
    git archive "$REV" dls profiles firmware_catalog | tar -x -C "$SNAP"
    export PYTHONPATH="$SNAP"
    LABEL="commit $SHA"
else
    LABEL="working tree"
fi
echo "measuring dls from ${PYTHONPATH:-the working tree} ($LABEL)"
ONLY="$*"
run() {
    name=$1; shift
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "=== $name: $*"
    $PY bench/dls_files.py --repeat 3 --duration 10 --label "$LABEL" "$@" 2>&1 \
        | tee "bench/results/$name.log"
}
run sqlite-1k-w1   --devices 1000   --workers 1 --profile
run sqlite-1k-w2   --devices 1000   --workers 2 --profile
run sqlite-100k-w1 --devices 100000 --workers 1 --hot 10000 --profile
run sqlite-100k-w2 --devices 100000 --workers 2 --hot 10000
run pg-1k-w1       --devices 1000   --workers 1 --database postgres --pg-admin-url "$PG" --profile
run pg-1k-w2       --devices 1000   --workers 2 --database postgres --pg-admin-url "$PG"
run pg-100k-w1     --devices 100000 --workers 1 --database postgres --pg-admin-url "$PG" --hot 10000
run pg-100k-w2     --devices 100000 --workers 2 --database postgres --pg-admin-url "$PG" --hot 10000
