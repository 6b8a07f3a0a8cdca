#!/usr/bin/env bash
# The root filesystems of the base images that tests/tests/deploy_image.rs builds
# deploy/Dockerfile from, where no image registry can be pulled from. Made from Debian's
# packages (debootstrap) as tarballs for `docker import`, kept outside the work tree so that
# they survive it. As root: ./tests/rootfs.sh [--check] [DIR] (default
# /var/cache/mcpwatch/rootfs; MCPWATCH_ROOTFS too). --check makes nothing: it lists what is
# missing or stale and exits 1 if anything is.
#
#   bookworm-build.tar  Debian 12 minbase with gcc, libc6-dev, make, pkg-config,
#                       ca-certificates: what rust:1.95-bookworm offers the build, less Rust
#                       (make builds the exporter's jemalloc). bookworm-build.packages names
#                       the packages; a different list makes it again.
#   bookworm-rust.tar   bookworm-build.tar with this machine's Rust toolchain (cargo, rustc,
#                       the standard library; no docs or sources) where the rust image has
#                       it: /usr/local/rustup/toolchains/<version>-x86_64-unknown-linux-gnu,
#                       cargo and rustc in /usr/local/cargo/bin. bookworm-rust.version names
#                       the toolchain; a different `rustc --version` makes it again.
#   bookworm-cc.tar     The files of gcr.io/distroless/cc-debian12:nonroot: base-files,
#                       netbase, tzdata, the CA bundle, libc6, libgcc-s1, libgomp1,
#                       libstdc++6, libssl3, the users root, nobody and nonroot (65532); no
#                       shell, no package manager.
#
# The builder also trusts the CAs this machine adds (/usr/local/share/ca-certificates), as
# cargo in it fetches the crates from crates.io through the same network.
set -euo pipefail

check=0
if [[ ${1:-} == --check ]]; then
    check=1
    shift
fi
ROOTFS=${1:-${MCPWATCH_ROOTFS:-/var/cache/mcpwatch/rootfs}}
MIRROR=${MCPWATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}

sysroot=$(rustc --print sysroot)
toolchain_version=$(rustc --version)
# The rust image's name for its toolchain: 1.95.0-x86_64-unknown-linux-gnu.
toolchain_name="$(rustc --version | awk '{print $2}')-$(rustc -vV | awk '/^host:/ {print $2}')"

build_packages=ca-certificates,gcc,libc6-dev,make,pkg-config,netbase

missing=()
if [[ ! -f $ROOTFS/bookworm-build.tar ]] ||
    [[ $(cat "$ROOTFS/bookworm-build.packages" 2>/dev/null) != "$build_packages" ]]; then
    # The toolchain image is made from the builder's: both go.
    missing+=(bookworm-build.tar bookworm-rust.tar)
fi
[[ -f $ROOTFS/bookworm-cc.tar ]] || missing+=(bookworm-cc.tar)
if [[ ! -f $ROOTFS/bookworm-rust.tar ]] ||
    [[ $(cat "$ROOTFS/bookworm-rust.version" 2>/dev/null) != "$toolchain_version" ]]; then
    missing+=(bookworm-rust.tar)
fi
if (( check )); then
    (( ${#missing[@]} == 0 )) || { printf '%s\n' "${missing[@]/#/$ROOTFS/}"; exit 1; }
    exit 0
fi
(( ${#missing[@]} )) || exit 0

mkdir -p "$ROOTFS"
work=$(mktemp -d "$ROOTFS/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Writes the tarball of a directory atomically: numeric owners, no access times.
pack() {
    tar --numeric-owner --sort=name -C "$1" -cf "$2.partial" .
    mv "$2.partial" "$2"
}

if [[ " ${missing[*]} " == *" bookworm-build.tar "* || " ${missing[*]} " == *" bookworm-cc.tar "* ]]; then
    root=$work/build
    debootstrap --variant=minbase \
        --include="$build_packages" \
        bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
        { cat "$work/debootstrap.log" >&2; exit 1; }
    debs=$root/var/cache/apt/archives

    # The distroless stand-in, from the same packages, unpacked without running anything.
    cc=$work/cc
    mkdir -p "$cc"
    for package in base-files netbase tzdata libc6 libgcc-s1 libgomp1 libstdc++6 libssl3; do
        deb=$(find "$debs" -name "${package}_*.deb" | head -n 1)
        [[ -n $deb ]] || { echo "no $package package in $debs" >&2; exit 1; }
        dpkg-deb -x "$deb" "$cc"
    done
    rm -rf "$cc/usr/share/doc" "$cc/usr/share/man" "$cc/usr/share/lintian"
    install -d -m 0755 "$cc/etc/ssl/certs" "$cc/root" "$cc/var/lib" "$cc/run"
    install -d -m 0700 -o 65532 -g 65532 "$cc/home/nonroot"
    install -d -m 1777 "$cc/tmp"
    install -m 0644 "$root/etc/ssl/certs/ca-certificates.crt" "$cc/etc/ssl/certs/"
    cat >"$cc/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$cc/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$cc/etc/nsswitch.conf"
    pack "$cc" "$ROOTFS/bookworm-cc.tar"

    # The builder: this machine's own CAs, then the package cache dropped.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null 2>&1
    fi
    rm -rf "$debs"/*.deb "$root"/var/lib/apt/lists/* "$root/usr/share/doc" "$root/usr/share/man"
    pack "$root" "$ROOTFS/bookworm-build.tar"
    printf '%s\n' "$build_packages" >"$ROOTFS/bookworm-build.packages"
    rm -rf "$root" "$cc"
fi

# The toolchain, appended to a copy of the builder's tarball: only the directories the
# builder has not (docker import refuses a path twice).
toolchain=$work/toolchain
dest=$toolchain/usr/local/rustup/toolchains/$toolchain_name
mkdir -p "$dest/bin" "$dest/lib/rustlib" "$toolchain/usr/local/cargo/bin"
cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$dest/bin/"
cp -a "$sysroot"/lib/*.so* "$dest/lib/"
host=$(rustc -vV | awk '/^host:/ {print $2}')
mkdir -p "$dest/lib/rustlib/$host"
cp -a "$sysroot/lib/rustlib/$host/lib" "$sysroot/lib/rustlib/$host/bin" "$dest/lib/rustlib/$host/"
for program in cargo rustc; do
    ln -s "../../rustup/toolchains/$toolchain_name/bin/$program" \
        "$toolchain/usr/local/cargo/bin/$program"
done
cp "$ROOTFS/bookworm-build.tar" "$work/rust.tar"
tar --numeric-owner --owner=0 --group=0 --sort=name -C "$toolchain" -rf "$work/rust.tar" \
    ./usr/local/rustup ./usr/local/cargo
mv "$work/rust.tar" "$ROOTFS/bookworm-rust.tar"
printf '%s\n' "$toolchain_version" >"$ROOTFS/bookworm-rust.version"
