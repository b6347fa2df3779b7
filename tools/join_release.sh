#!/usr/bin/env bash
# Joins the model parts that tools/motion_recipe.sh brings back and unpacks the release, checking its sha256.
#   bash tools/join_release.sh FOLDER_WITH_PARTS DEST [NAME]   # NAME.tgz.part-* -> DEST/flexivid-small
# NAME: model (the distilled release, the default), base_A or base_B (a pretraining arm's bf16 base, no adapters).
set -euo pipefail
src=${1:?folder with NAME.tgz.part-* and summary.txt}; dst=${2:?destination folder}; name=${3:-model}
ls "$src/$name".tgz.part-* >/dev/null 2>&1 \
  || { echo "error: no $name.tgz.part-* in $src (run tools/motion_recipe.sh)"; exit 2; }
want=$(sed -n "s/^$name.tgz sha256 \([0-9a-f]*\).*/\1/p" "$src/summary.txt" 2>/dev/null || true)
got=$(cat "$src/$name".tgz.part-* | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] \
  || { echo "error: joined $name parts have sha256 $got, summary.txt says ${want:-nothing}: a part is missing"; exit 2; }
mkdir -p "$dst"; tmp=$(mktemp -d "$dst/.join.XXXXXX")
cat "$src/$name".tgz.part-* | tar xzf - -C "$tmp"
rm -rf "$dst/flexivid-small.old"; [ -d "$dst/flexivid-small" ] && mv "$dst/flexivid-small" "$dst/flexivid-small.old"
mv "$tmp/flexivid-small" "$dst/flexivid-small" && rmdir "$tmp" && rm -rf "$dst/flexivid-small.old"
find "$dst/flexivid-small" -name '*.safetensors' -exec du -b {} +
