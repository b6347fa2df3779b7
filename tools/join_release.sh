#!/usr/bin/env bash
# Joins the model parts that tools/motion_recipe.sh brings back and unpacks the release, checking its sha256.
#   bash tools/join_release.sh FOLDER_WITH_PARTS DEST     # -> DEST/flexivid-small (e.g. DEST=checkpoints)
set -euo pipefail
src=${1:?folder with model.tgz.part-* and summary.txt}; dst=${2:?destination folder}
ls "$src"/model.tgz.part-* >/dev/null 2>&1 \
  || { echo "error: no model.tgz.part-* in $src (run tools/motion_recipe.sh)"; exit 2; }
want=$(sed -n 's/^model.tgz sha256 //p' "$src/summary.txt")
got=$(cat "$src"/model.tgz.part-* | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] \
  || { echo "error: joined parts have sha256 $got, summary.txt says ${want:-nothing}: a part is missing"; exit 2; }
mkdir -p "$dst"; tmp=$(mktemp -d "$dst/.join.XXXXXX")
cat "$src"/model.tgz.part-* | tar xzf - -C "$tmp"
rm -rf "$dst/flexivid-small.old"; [ -d "$dst/flexivid-small" ] && mv "$dst/flexivid-small" "$dst/flexivid-small.old"
mv "$tmp/flexivid-small" "$dst/flexivid-small" && rmdir "$tmp" && rm -rf "$dst/flexivid-small.old"
du -b "$dst"/flexivid-small/model.safetensors "$dst"/flexivid-small/adapters/*.safetensors
