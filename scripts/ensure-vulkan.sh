#!/usr/bin/env bash
# Sourced by the README's commands: installs Mesa's software Vulkan driver (lavapipe) when this
# machine has no Vulkan driver or loader, and quiets Mesa's headless warning.
has_icd() { compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null || compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null; }
# The library list is captured first: `ldconfig -p | grep -q` under pipefail fails when grep exits
# at the first match and ldconfig dies of SIGPIPE, which reinstalled the driver now and then.
libs=$(/sbin/ldconfig -p 2>/dev/null || true)
if ! has_icd || [[ $libs != *libvulkan.so.1* ]]; then
    echo "no Vulkan driver found: installing Mesa's software driver (lavapipe)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
