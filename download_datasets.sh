#!/usr/bin/env bash
# Download PTB-XL 1.0.3 from PhysioNet, resumably, and verify every file against the dataset's SHA256SUMS.txt.
#
#   ./download_datasets.sh [DEST]        # default DEST: ./data/ptb-xl  (then: export ECGLAB_PTBXL=DEST)
#   ./download_datasets.sh --verify DEST # only check an existing copy
#
# The archive is about 1.7 GB (3 GB unpacked). An interrupted download resumes where it stopped when rerun.
# ECG Lab also works with nothing downloaded (built-in synthetic signals); PTB-XL gives real signals and labels.
set -euo pipefail

VERSION=1.0.3
BASE_URL="${PTBXL_BASE_URL:-https://physionet.org/files/ptb-xl/$VERSION}"
ZIP_URL="${PTBXL_ZIP_URL:-https://physionet.org/static/published-projects/ptb-xl/ptb-xl-a-large-publicly-available-electrocardiography-dataset-$VERSION.zip}"

die() { echo "error: $*" >&2; exit 1; }

verify() {
  local dir=$1
  [ -f "$dir/SHA256SUMS.txt" ] || die "$dir has no SHA256SUMS.txt, so it cannot be verified (is it a PTB-XL $VERSION folder?)."
  echo "verifying $(wc -l < "$dir/SHA256SUMS.txt") files in $dir against SHA256SUMS.txt ..."
  if ! (cd "$dir" && sha256sum --quiet --check SHA256SUMS.txt); then
    die "some files in $dir do not match SHA256SUMS.txt; delete them and rerun ./download_datasets.sh to fetch them again."
  fi
  echo "PTB-XL $VERSION in $dir is complete and verified."
}

if [ "${1:-}" = "--verify" ]; then
  [ -n "${2:-}" ] || die "usage: ./download_datasets.sh --verify DEST"
  verify "$2"
  exit 0
fi
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac

DEST="${1:-data/ptb-xl}"
command -v curl >/dev/null || die "curl is needed to download PTB-XL (apt-get install curl)."
command -v unzip >/dev/null || die "unzip is needed to unpack PTB-XL (apt-get install unzip)."
command -v sha256sum >/dev/null || die "sha256sum is needed to verify PTB-XL (coreutils)."

if ! curl -fsSI --max-time 20 "$BASE_URL/SHA256SUMS.txt" >/dev/null 2>&1; then
  die "cannot reach PhysioNet ($BASE_URL): this machine seems to be offline. Download PTB-XL $VERSION elsewhere, copy it here, and run ./download_datasets.sh --verify DIR, then export ECGLAB_PTBXL=DIR. ECG Lab runs without it on synthetic signals."
fi

mkdir -p "$DEST"
ZIP="$DEST.zip"
echo "downloading PTB-XL $VERSION to $ZIP (resumes if interrupted) ..."
curl -fL --retry 5 --retry-delay 5 -C - -o "$ZIP" "$ZIP_URL" || die "the download stopped; rerun ./download_datasets.sh to resume it."
echo "unpacking ..."
TMP="$DEST.unpacking"
rm -rf "$TMP" && mkdir -p "$TMP"
unzip -q "$ZIP" -d "$TMP" || die "$ZIP is damaged; delete it and rerun ./download_datasets.sh."
INNER=$(dirname "$(find "$TMP" -name ptbxl_database.csv -print -quit)")
[ -n "$INNER" ] && [ -f "$INNER/ptbxl_database.csv" ] || die "the archive has no ptbxl_database.csv; delete $ZIP and rerun."
rm -rf "$DEST" && mv "$INNER" "$DEST" && rm -rf "$TMP"
verify "$DEST"
rm -f "$ZIP"
echo
echo "Done. Point ECG Lab at it with:  export ECGLAB_PTBXL=$(cd "$DEST" && pwd)"
