#!/usr/bin/env bash
# Installs what a fresh machine lacks to build hadrill's images and run its tests.
# Idempotent: installs nothing that is already there.
set -euo pipefail

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v python3 >/dev/null || need+=(python3 python3-pip)
# ci/workflow.py, the local runner of the workflow files, reads them with PyYAML.
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
command -v docker >/dev/null || need+=(docker.io)
# Existing hosts are reached with the system's OpenSSH (ssh, and ssh-keygen for the test bed).
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
# The report test loads the HTML report in a real headless browser.
command -v chromium >/dev/null || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi

if ! docker info >/dev/null 2>&1; then
    echo "ci/prereqs.sh: the Docker engine is not reachable; start it (systemctl start docker) or set DOCKER_HOST" >&2
    exit 1
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
