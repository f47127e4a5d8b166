#!/usr/bin/env bash
# Build the Nitro enclave image (EIF) of this checkout and print the PCR0 to pin.
#
#   deploy/nitro/build.sh                 # on an EC2 instance with nitro-cli and docker
#   PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> deploy/nitro/build.sh
#
# Outputs (under build/nitro/): the wheel, repp2p-enclave.eif, measurements.json (what
# nitro-cli printed: PCR0, PCR1, PCR2) and policy-snippet.toml (the [measurements] lines
# for a network's policy). Run from the repository root.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
VERSION="$(git describe --always --dirty)"
TAG="${TAG:-repp2p-enclave:${VERSION}}"
OUT=build/nitro
PYTHON_IMAGE="${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
REQUIREMENTS="${REQUIREMENTS:-deploy/nitro/requirements-enclave.txt}"
ENGINES="${ENGINES:-echo sentiment}"
# Timestamps inside the wheel come from the commit, not the clock: same commit, same wheel.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"

case "${VERSION}" in
  *-dirty) echo "warning: uncommitted changes; this PCR0 matches no commit" >&2 ;;
esac
case "${PYTHON_IMAGE}" in
  *@sha256:*) ;;
  *) echo "warning: PYTHON_IMAGE is not pinned by digest; PCR0 will drift with it" >&2 ;;
esac
for tool in docker nitro-cli python3; do
  command -v "${tool}" >/dev/null || { echo "error: ${tool} not found" >&2; exit 1; }
done

rm -rf "${OUT}"
mkdir -p "${OUT}/context/wheels"
python3 -m pip wheel --no-deps --wheel-dir "${OUT}/context/wheels" .
cp "${REQUIREMENTS}" "${OUT}/context/requirements-enclave.txt"
docker build --file deploy/nitro/Dockerfile \
  --build-arg "PYTHON_IMAGE=${PYTHON_IMAGE}" \
  --tag "${TAG}" "${OUT}/context"
nitro-cli build-enclave --docker-uri "${TAG}" --output-file "${OUT}/repp2p-enclave.eif" \
  > "${OUT}/measurements.json"
# The JSON object nitro-cli prints (skipping any progress line before it).
PCR0="$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.JSONDecoder().raw_decode(t[t.index("{"):])[0]["Measurements"]["PCR0"])' \
  "${OUT}/measurements.json")"
{
  echo "# ${TAG}: PCR0 of ${OUT}/repp2p-enclave.eif (engines: ${ENGINES})"
  for engine in ${ENGINES}; do
    printf '[measurements."%s"]\nnitro = ["%s"]\n' "${engine}" "${PCR0}"
  done
} > "${OUT}/policy-snippet.toml"
cat "${OUT}/measurements.json"
echo
echo "PCR0 ${PCR0}"
echo "policy lines: ${OUT}/policy-snippet.toml"
