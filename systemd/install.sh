#!/bin/sh
# Install zoned as a systemd service; safe to run again (idempotent: the same files, the
# operator's /etc/zoned/zoned.yaml never overwritten).
#
#   systemd/install.sh [--prefix /opt/zoned] [--destdir DIR] [--python python3] [--no-pip]
#
# Puts: a venv with zoned under PREFIX/venv, /usr/local/bin/zoned (symlink),
# /etc/systemd/system/zoned.service, /etc/zoned/zoned.yaml and containers.d/ (examples,
# only when absent), PREFIX/share/ (example config, schema, scenarios). --destdir stages
# everything under DIR (for packaging and tests) and skips systemctl; --no-pip skips
# creating the venv (the symlink then points at where it would be).
set -eu

prefix=/opt/zoned
destdir=
python=python3
pip=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --no-pip) pip=no; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

src=$(cd "$(dirname "$0")/.." && pwd)
d=$destdir

say() { echo "install.sh: $*"; }

# copy SRC DST MODE: only when different, so a second run changes nothing
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
    install -D -m "$3" "$1" "$2"
    say "installed $2"
}

if [ "$pip" = yes ]; then
    if [ ! -x "$d$prefix/venv/bin/python" ]; then
        "$python" -m venv "$d$prefix/venv"
        say "created $d$prefix/venv"
    fi
    "$d$prefix/venv/bin/pip" install --quiet --upgrade "$src"
    say "zoned installed in $d$prefix/venv"
fi

mkdir -p "$d/usr/local/bin"
if [ "$(readlink "$d/usr/local/bin/zoned" 2>/dev/null || true)" != "$prefix/venv/bin/zoned" ]; then
    ln -sfn "$prefix/venv/bin/zoned" "$d/usr/local/bin/zoned"
    say "linked /usr/local/bin/zoned -> $prefix/venv/bin/zoned"
fi

put "$src/systemd/zoned.service" "$d/etc/systemd/system/zoned.service" 0644

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

if [ -z "$d" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "systemctl daemon-reload done; start with: systemctl enable --now zoned"
fi
