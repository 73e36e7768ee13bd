#!/usr/bin/env bash
# Makes the local stand-in for the Dockerfile's base image, which cannot be pulled here: Debian
# bookworm (debootstrap, from this machine's mirror) plus this machine's Node.js 20, committed into
# buildah's storage under the name ops/Dockerfile's FROM uses. Kept there between runs: rebuilt only
# when missing or when the machine's node is another version. Needs root, buildah and debootstrap.
set -euo pipefail

BASE=${TROUPE_BASE_IMAGE:-docker.io/library/node:20-bookworm-slim}
log() { printf '[image] %s\n' "$*" >&2; }

node_bin=$(command -v node)
node_bin=$(readlink -f "$node_bin")
node_version=$("$node_bin" --version)
case "$node_version" in
  v20.*) ;;
  *) log "this machine's node is $node_version; the base must carry Node.js 20 (the image's FROM is node:20)"; exit 2 ;;
esac

if have=$(buildah inspect --type image --format '{{index .ImageAnnotations "org.troupe.base.node"}}' "$BASE" 2>/dev/null) \
  && [ "$have" = "$node_version" ]; then
  log "base $BASE is there (node $have)"
  exit 0
fi

# The machine's mirror, as apt here knows it (deb822 or one-line format).
mirror=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -v security | head -n 1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
prefix=$(dirname "$(dirname "$node_bin")")          # /usr for /usr/bin/node, /usr/local for /usr/local/bin/node
npm_dir=$prefix/lib/node_modules/npm
[ -f "$npm_dir/bin/npm-cli.js" ] || { log "npm not found at $npm_dir (next to $node_bin)"; exit 2; }

work=$(mktemp -d /var/tmp/troupe-base.XXXXXX)
ctr=''
cleanup() {
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap bookworm from $mirror (about two minutes)"
debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
root=$work/rootfs
# What a slim image leaves out: the package cache and lists (apt-get update fetches them again),
# documentation and translations.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*

# Node.js where the official image keeps it, /usr/local, with npm, corepack and the headers that
# node-gyp builds native addons against (the official image downloads them; here nothing is downloaded).
log "copying node $node_version from $prefix"
install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
[ -d "$prefix/lib/node_modules/corepack" ] && cp -a "$prefix/lib/node_modules/corepack" "$root/usr/local/lib/node_modules/corepack"
[ -d "$prefix/include/node" ] && cp -a "$prefix/include/node" "$root/usr/local/include/node"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
[ -d "$root/usr/local/lib/node_modules/corepack" ] && ln -sf ../lib/node_modules/corepack/dist/corepack.js "$root/usr/local/bin/corepack"
# This machine reaches the registry through its own certificate authority; the image's npm must
# trust it too. The official image has no such file: there, npm trusts node's bundled authorities.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/usr/local/etc"
{
  echo "cafile=/etc/ssl/certs/ca-certificates.crt"
  echo "nodedir=/usr/local"
  echo "update-notifier=false"
} >"$root/usr/local/etc/npmrc"  # npm reads its global config from PREFIX/etc/npmrc

ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
cp -a "$root"/. "$mnt"/
buildah umount "$ctr" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="${node_version#v}" \
  --cmd node \
  --annotation org.troupe.base.node="$node_version" \
  --label org.opencontainers.image.description="local stand-in for node:20-bookworm-slim: debootstrap bookworm + this machine's node $node_version" \
  "$ctr"
buildah commit --quiet "$ctr" "$BASE" >/dev/null
log "base $BASE committed (node $node_version, $(buildah images --format '{{.Size}}' "$BASE"))"
