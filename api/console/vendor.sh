#!/usr/bin/env bash
# Reproduce the console's vendored front-end files from npm (`make console-assets`).
# Pinned versions; the files are committed, so nothing is downloaded at run time (no CDN).
#   htmx.org  -> api/console/static/vendor/htmx.min.js   (served by the console)
#   axe-core  -> tests/console/vendor/axe.min.js         (accessibility scan in the browser tests)
set -euo pipefail
HTMX_VERSION=2.0.11
AXE_VERSION=4.11.4
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX_VERSION" "axe-core@$AXE_VERSION" >/dev/null
tar xzf "htmx.org-$HTMX_VERSION.tgz" package/dist/htmx.min.js package/LICENSE
install -m 0644 package/dist/htmx.min.js "$root/api/console/static/vendor/htmx.min.js"
install -m 0644 package/LICENSE "$root/api/console/static/vendor/htmx.LICENSE"
echo "htmx.org@$HTMX_VERSION" > "$root/api/console/static/vendor/VERSIONS"
rm -rf package
tar xzf "axe-core-$AXE_VERSION.tgz" package/axe.min.js package/LICENSE
install -m 0644 package/axe.min.js "$root/tests/console/vendor/axe.min.js"
install -m 0644 package/LICENSE "$root/tests/console/vendor/axe.LICENSE"
echo "axe-core@$AXE_VERSION" > "$root/tests/console/vendor/VERSIONS"
