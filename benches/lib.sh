# Shared by the benchmark scripts: source it from the repository root.

# need CMD:PACKAGE ...: installs each missing command's Debian package (as root), or stops.
need() {
  for pkg in "$@"; do
    command -v "${pkg%%:*}" >/dev/null 2>&1 && continue
    [ "$(id -u)" = 0 ] || { echo "install ${pkg#*:}" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg#*:}" >/dev/null
  done
}

# Builds the release binary and sets BIN.
build_release() {
  cargo build --release --locked -q
  BIN=$PWD/target/release/sekisho
}
