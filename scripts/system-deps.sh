#!/usr/bin/env bash
# Installs the Debian packages the service (run) or the test suite (test) needs, when missing.
set -euo pipefail
case "${1:-run}" in
  run)  pkgs=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 shared-mime-info) ;;
  test) pkgs=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 shared-mime-info
              poppler-utils libnss3-tools qpdf pdftk-java postgresql redis-server
              chromium chromium-driver) ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installation des paquets Debian manquants : ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
