# Shared helpers for scripts/run and scripts/test (sourced, not executed).

PYTHON="${PYTHON:-python3}"
GITOPS_BRIDGE_TOOLS="${GITOPS_BRIDGE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gitops-bridge/tools}"

# ensure_apt_packages PKG...: install the Debian packages that are missing (needs root or sudo).
ensure_apt_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv SPEC: create .venv with Python >= 3.11 if missing and install the project.
# Re-installs only when pyproject.toml changed since the last install.
ensure_venv() {
  if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
    "$PYTHON" -m venv .venv
  fi
  local stamp=".venv/.installed-$1"
  if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$1"
    touch "$stamp"
  fi
}
