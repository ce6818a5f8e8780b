#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: Debian packages (only
# the missing ones), the unprivileged test user that the test sshd logs in as,
# and sshd's privilege-separation directory. Idempotent and quiet.
set -euo pipefail

PKGS=(
  openssh-server openssh-client
  python3-ipykernel python3-jupyter-client jupyter-client jupyter-console
  python3-nbclient jupyter-nbconvert python3-nbconvert
  jupyter-server python3-jupyter-server
  websockify python3-websockets python3-tornado
  jupyterhub python3-venv
  iproute2 nftables procps netcat-openbsd libnss-wrapper
  slurm-wlm munge
  tcsh zsh fish
  python3-matplotlib
  libpam-google-authenticator oathtool
  krb5-kdc krb5-admin-server krb5-user
  wine64 wine
)
TEST_USER=${GOPYK_TEST_USER:-gpktest}

sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  fi
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && [ -z "$sudo" ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run 'sudo make setup' once" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
  $sudo mkdir -p /run/sshd
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    $sudo useradd -m -s /bin/bash "$TEST_USER"
    # '*' rather than a '!' lock: sshd with UsePAM no refuses '!'-locked accounts.
    $sudo usermod -p '*' "$TEST_USER"
  fi
  # Password and verification-code logins (issue 14); tests set its password.
  if ! id gpk14pw >/dev/null 2>&1; then
    $sudo useradd -m -s /bin/bash gpk14pw
  fi
fi
