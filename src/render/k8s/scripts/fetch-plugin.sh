# Install the JDBC sink plugin from a release archive, but only if its sha256 is the one the
# inventory pins. Inputs (environment): PLUGIN_URL, PLUGIN_SHA256 (may be empty), PLUGIN_DIR.
set -eu

archive="$PLUGIN_DIR/.download"
curl -fsSL --retry 5 --retry-delay 3 --retry-connrefused -o "$archive" "$PLUGIN_URL"
actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [ -z "$PLUGIN_SHA256" ]; then
  echo "refusing to install $PLUGIN_URL: the inventory pins no checksum." >&2
  echo "Its sha256 is $actual; verify it, then set pipeline.connect.plugin.sha256 and re-render." >&2
  exit 1
fi
if [ "$actual" != "$PLUGIN_SHA256" ]; then
  echo "checksum mismatch for $PLUGIN_URL: expected $PLUGIN_SHA256, got $actual" >&2
  exit 1
fi
mkdir -p "$PLUGIN_DIR/jdbc-sink"
case "$PLUGIN_URL" in
  *.zip) unzip -q "$archive" -d "$PLUGIN_DIR/jdbc-sink" ;;
  *.tar.gz|*.tgz) tar -xzf "$archive" -C "$PLUGIN_DIR/jdbc-sink" ;;
  *) tar -xf "$archive" -C "$PLUGIN_DIR/jdbc-sink" ;;
esac
rm -f "$archive"
echo "installed $PLUGIN_URL (sha256 $actual)"
