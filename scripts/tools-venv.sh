# Sourced by scripts/test and deploy/image/sbom: makes the venv of the
# supply-chain tools under target/ (scripts/tools-requirements.txt; re-made
# when that file changes) and sets $tools to its bin directory. Run from
# the repo root.
tools_venv=target/tools-venv
if [ ! -x "$tools_venv/bin/python" ] || ! cmp -s scripts/tools-requirements.txt "$tools_venv/requirements.txt"; then
  rm -rf "$tools_venv"
  python3 -m venv "$tools_venv"
  "$tools_venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/tools-requirements.txt
  cp scripts/tools-requirements.txt "$tools_venv/requirements.txt"
fi
tools=$PWD/$tools_venv/bin
# syft asks its project for a newer release at every start otherwise.
export SYFT_CHECK_FOR_APP_UPDATE=false
