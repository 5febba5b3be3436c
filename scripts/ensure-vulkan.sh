#!/usr/bin/env bash
# Sourced by the README's commands: installs Mesa's software Vulkan driver (lavapipe) when this
# machine has no Vulkan driver or loader, and quiets Mesa's headless warning.
has_icd() { compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null || compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null; }
if ! has_icd || ! /sbin/ldconfig -p | grep -q 'libvulkan.so.1'; then
    echo "no Vulkan driver found: installing Mesa's software driver (lavapipe)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
