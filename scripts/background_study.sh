#!/usr/bin/env bash
# A long study in the background: its own clone of this repository pinned at COMMIT (so edits and CI in the
# working tree never touch it), output outside the repository, the lowest CPU priority. Run it again to resume.
# A new OUT is first filled with the records in RECORDS (from `salclass records`), which the study reuses as
# finished runs. Extra arguments go to `salclass study`.
#
#   scripts/background_study.sh COMMIT CONFIG OUT RECORDS [salclass study options...]
#   e.g. scripts/background_study.sh 96a5cc4 configs/study/headline.yaml /work/headline/study results/headline \
#            --set data.source=null --set data.store=/work/headline/store-144
# The log is OUT.log; each start is one line in OUT.history.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
commit=$1 config=$2 out=$(realpath -m "$3") records=$(realpath -m "$4")
shift 4
repo=$(cd "$(dirname "$0")/.." && pwd)
clone="$out.clone"
[ -d "$clone" ] || git clone -q "$repo" "$clone"
git -C "$clone" fetch -q "$repo" HEAD
git -C "$clone" checkout -q --detach "$commit"
if [ ! -e "$out" ] && [ -d "$records" ]; then
  cp -r "$records" "$out"
fi
echo "$(date -u +%FT%TZ) start at $(git -C "$clone" rev-parse --short HEAD): $config $*" >> "$out.history"
cd "$clone"
nohup nice -n 19 env PYTHONPATH="$clone/src" "$repo/.venv/bin/python" -m salclass.cli study \
  --config "$config" --out "$out" "$@" >> "$out.log" 2>&1 < /dev/null &
echo "study running in the background (pid $!): tail -f $out.log"
