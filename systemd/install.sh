#!/bin/sh
# Install zoned as a systemd service. Idempotent: a second run with the same source changes
# nothing (no file rewritten, no pip run, no daemon-reload) and says so; the operator's
# /etc/zoned/ and /etc/systemd/system/ are never overwritten.
#
#   systemd/install.sh [--prefix /opt/zoned] [--destdir DIR] [--python python3] [--no-pip]
#                      [--no-apt] [--build-deps]
#
# Puts: a venv with zoned under PREFIX/venv, /usr/local/bin/zoned (symlink), the unit in
# /usr/local/lib/systemd/system/zoned.service (override it with drop-ins in
# /etc/systemd/system/zoned.service.d/: `systemctl edit zoned`), the man page zoned(1) in
# /usr/local/share/man/man1, bash and zsh completion under /usr/local/share,
# /etc/zoned/zoned.yaml and containers.d/ (examples, only when absent), PREFIX/share/
# (example config, schema, scenarios). systemd-python is built from source (no wheels):
# on Debian and Ubuntu the missing build packages (gcc, pkg-config, libsystemd-dev,
# python3-dev) are installed with apt-get first, unless --no-apt (--build-deps only lists
# the missing ones, one a line, and exits). --destdir stages
# everything under DIR (for packaging and tests) and skips apt and systemctl; --no-pip
# skips the venv (the symlink then points at where it would be; the man page and
# completion are made with --python when it can import zoned).
set -eu

prefix=/opt/zoned
destdir=
python=python3
pip=yes
apt=yes
list_deps=no
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --no-pip) pip=no; shift ;;
        --no-apt) apt=no; shift ;;
        --build-deps) list_deps=yes; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

src=$(cd "$(dirname "$0")/.." && pwd)
d=$destdir
changed=no

say() { echo "install.sh: $*"; }

# copy SRC DST MODE: only when different, so a second run changes nothing
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
    install -D -m "$3" "$1" "$2"
    changed=yes
    say "installed $2"
}

# systemd-python ships no wheels: pip compiles it, which needs these (Debian's names).
missing_build_deps() {
    missing=
    for pkg in gcc pkg-config libsystemd-dev; do
        dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' \
            || missing="$missing $pkg"
    done
    # python3-dev: the headers of the Python the venv is made from (a self-built Python
    # has its own)
    inc=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] || missing="$missing python3-dev"
}

if [ "$list_deps" = yes ]; then
    missing_build_deps
    for pkg in $missing; do echo "$pkg"; done
    exit 0
fi

build_deps() {
    if [ "$apt" = no ] || [ -n "$d" ] || ! command -v apt-get >/dev/null 2>&1; then
        return 0
    fi
    missing_build_deps
    if [ -n "$missing" ]; then
        say "installing what systemd-python needs to build:$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    fi
}

if [ "$pip" = yes ]; then
    build_deps
    if [ ! -x "$d$prefix/venv/bin/python" ]; then
        "$python" -m venv "$d$prefix/venv"
        say "created $d$prefix/venv"
    fi
    # pip rebuilds and rewrites a local source every time: only when the source changed
    stamp="$d$prefix/venv/.zoned-source"
    sum=$(cd "$src" && find pyproject.toml constraints.txt zoned -type f ! -path '*/__pycache__/*' \
        ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$sum" ]; then
        # The versions CI tested (constraints.txt), not whatever is newest today.
        "$d$prefix/venv/bin/pip" install --quiet --upgrade -c "$src/constraints.txt" "$src[shell]"
        echo "$sum" > "$stamp"
        changed=yes
        say "zoned installed in $d$prefix/venv (a running zoned runs the old code until" \
            "systemctl restart zoned)"
    fi
    gen_python="$d$prefix/venv/bin/python"
else
    gen_python=$python
fi

mkdir -p "$d/usr/local/bin"
if [ "$(readlink "$d/usr/local/bin/zoned" 2>/dev/null || true)" != "$prefix/venv/bin/zoned" ]; then
    ln -sfn "$prefix/venv/bin/zoned" "$d/usr/local/bin/zoned"
    changed=yes
    say "linked /usr/local/bin/zoned -> $prefix/venv/bin/zoned"
fi

# The unit where local packages go; the operator's changes go in drop-ins under /etc.
put "$src/systemd/zoned.service" "$d/usr/local/lib/systemd/system/zoned.service" 0644
if [ -e "$d/etc/systemd/system/zoned.service" ]; then
    say "note: /etc/systemd/system/zoned.service exists and hides the installed unit; left" \
        "as it is. If you did not edit it (an older install.sh put it there), remove it;" \
        "keep your changes in /etc/systemd/system/zoned.service.d/*.conf (systemctl edit zoned)"
fi

# The man page and completion, generated from the parser (zoned/cli/generate.py); the same
# date and width every run, so an unchanged zoned gives unchanged files.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: "${SOURCE_DATE_EPOCH:=$(stat -c %Y "$src/pyproject.toml")}"
export SOURCE_DATE_EPOCH
if "$gen_python" -m zoned.cli.generate --out-dir "$tmp" 2>"$tmp/err"; then
    put "$tmp/zoned.1" "$d/usr/local/share/man/man1/zoned.1" 0644
    put "$tmp/zoned.bash" "$d/usr/local/share/bash-completion/completions/zoned" 0644
    put "$tmp/_zoned" "$d/usr/local/share/zsh/site-functions/_zoned" 0644
else
    say "warning: no man page nor completion ($gen_python: $(tail -n 1 "$tmp/err"))"
fi

share="$d$prefix/share"
put "$src/config/zoned.yaml" "$share/examples/zoned.yaml" 0644
for f in "$src"/config/containers.d/*.yaml; do
    put "$f" "$share/examples/containers.d/$(basename "$f")" 0644
done
put "$src/zoned/data/zoned.schema.json" "$share/zoned.schema.json" 0644
for f in "$src"/zoned/data/scenarios/*.yaml; do
    [ -f "$f" ] && put "$f" "$share/scenarios/$(basename "$f")" 0644
done

# The operator's configuration: the examples only on a first install.
if [ ! -e "$d/etc/zoned/zoned.yaml" ]; then
    put "$src/config/zoned.yaml" "$d/etc/zoned/zoned.yaml" 0644
    for f in "$src"/config/containers.d/*.yaml; do
        put "$f" "$d/etc/zoned/containers.d/$(basename "$f")" 0644
    done
    say "edit /etc/zoned/zoned.yaml and containers.d/, then: zoned check /etc/zoned/zoned.yaml"
fi

# The unit's ExecStartPre mounts host.shared_tmpfs through nsenter (util-linux).
if [ -z "$d" ] && [ ! -x /usr/bin/nsenter ]; then
    say "warning: no /usr/bin/nsenter (util-linux): the unit cannot mount host.shared_tmpfs"
fi

if [ "$changed" = no ]; then
    say "nothing to change"
elif [ -z "$d" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "systemctl daemon-reload done; start with: systemctl enable --now zoned"
fi
