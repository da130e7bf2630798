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
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installation des paquets Debian manquants : ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The suite talks to a real Redis on loopback (rate limits): start one when none answers.
if [ "${1:-run}" = test ] && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "Démarrage de Redis sur 127.0.0.1:6379"
  $sudo mkdir -p /var/lib/redis /var/log/redis
  $sudo redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/psc-test.log
fi
