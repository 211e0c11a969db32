#!/usr/bin/env bash
# Keeps hadrill's base image between CI runs: `save` writes it under ~/.cache/hadrill/images,
# `load` puts it back into the engine (then `hadrill images build` finds it and builds nothing).
set -euo pipefail
dir="${HOME}/.cache/hadrill/images"
mkdir -p "$dir"
case "${1:-}" in
    save)
        for tag in $(docker images --filter label=io.hadrill.image=base --format '{{.Repository}}:{{.Tag}}'); do
            [ -f "$dir/${tag//[:\/]/_}.tar" ] || docker save "$tag" -o "$dir/${tag//[:\/]/_}.tar"
        done ;;
    load)
        for f in "$dir"/*.tar; do [ -e "$f" ] && docker load -i "$f"; done; true ;;
    *) echo "usage: ci/images.sh save|load" >&2; exit 2 ;;
esac
