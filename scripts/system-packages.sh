#!/usr/bin/env bash
# Install the Debian packages the project uses, where apt is usable (root or passwordless sudo).
# Elsewhere, say exactly what to install and carry on: loaders then explain what is missing.
set -uo pipefail
# dataset-fashion-mnist, tuxpaint-stamps-default: shipped datasets; wordnet-base: WordNet 3.0 for concept hashtags;
# chromium(-driver): browser tests; postgresql: the feedback store's tests also run against a real server;
# openjdk-17-jre-headless: Spark's JVM (local mode) for the batch engine.
# mate-backgrounds, lomiri-wallpapers-*: the hashtag real-photo dev set; opencv-doc: its held-out object photos.
PACKAGES=(dataset-fashion-mnist tuxpaint-stamps-default wordnet-base chromium chromium-driver postgresql
          openjdk-17-jre-headless mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 opencv-doc)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
  echo "system packages missing: ${missing[*]}" >&2
  echo "apt is not usable by this user; install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: ${missing[*]}"
"${SUDO[@]}" apt-get update -qq || true
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
