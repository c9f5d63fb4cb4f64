#!/usr/bin/env bash
# Pin uv for the image build by version and hash: downloads the wheels a Linux image may
# pick from the package index and writes deploy/docker/uv-requirements.txt.
#   deploy/docker/update-uv.sh 0.13.9
set -euo pipefail
version=${1:?usage: update-uv.sh VERSION}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
for platform in manylinux_2_17_x86_64 manylinux_2_17_aarch64 musllinux_1_1_x86_64 \
                musllinux_1_1_aarch64; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$platform" \
    --python-version 3.11 "uv==$version" -d "$wheels"
done
{
  echo "# uv for the image build, by hash: pip refuses any other file (a tampered mirror, a"
  echo "# re-uploaded release). Written by deploy/docker/update-uv.sh; run it to move on."
  printf 'uv==%s' "$version"
  for wheel in "$wheels"/*.whl; do
    printf ' \\\n    --hash=sha256:%s' "$(sha256sum "$wheel" | cut -d' ' -f1)"
  done
  echo
} > "$here/uv-requirements.txt"
echo "update-uv: $here/uv-requirements.txt pins uv $version ($(ls "$wheels" | wc -l) wheels)"
