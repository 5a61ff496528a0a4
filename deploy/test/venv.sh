# Sourced by deploy/test/run and deploy/helm/render-kustomize: makes the
# Python venv under target/ with deploy/test/requirements.txt (re-made when
# that file changes) and sets $py to its interpreter. Run from the repo root.
venv=target/deploy-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s deploy/test/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/test/requirements.txt
  cp deploy/test/requirements.txt "$venv/requirements.txt"
fi
py="$venv/bin/python"
