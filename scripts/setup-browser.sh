#!/usr/bin/env bash
# Installs what the widget's browser tests need on Debian 12: Debian's
# Chromium (playwright-core drives it through executablePath; no browser
# download) and playwright-core under tests/e2e/browser/node_modules.
# Idempotent: a second run only checks what is there and returns fast.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
browser_dir="$here/tests/e2e/browser"

apt_pkgs=(chromium nodejs fonts-dejavu-core)
missing=()
for p in "${apt_pkgs[@]}"; do
  # nodejs may come from another source than Debian (a newer nodesource
  # build): checked for version 20+ below.
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-browser: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core 1.65 needs Node.js 20 or later (Debian 12's own nodejs is 18).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup-browser: Node.js >= 20 is needed for playwright-core (found $(node -v 2>/dev/null || echo none))" >&2
  exit 1
fi

# playwright-core only (not `playwright`): it never downloads a browser.
# The stamp holds the lock file's hash, so a changed lock reinstalls.
stamp="$browser_dir/node_modules/.membersync-stamp"
manifest_hash() {
  cat "$browser_dir/package.json" "$browser_dir/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1 || true
}
want=$(manifest_hash)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
   [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
  echo "setup-browser: npm install in $browser_dir"
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  if [ -f "$browser_dir/package-lock.json" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd "$browser_dir" && npm install --no-audit --no-fund --loglevel=error)
  fi
  want=$(manifest_hash)
  echo "$want" > "$stamp"
fi
echo "setup-browser: ok ($(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?'), playwright-core $(node -p "require('$browser_dir/node_modules/playwright-core/package.json').version"))"
