#!/bin/sh
# Install what ptleak needs on Debian 12: `deps.sh build` for the build,
# `deps.sh test` for the test suite and benchmarks. Checks first, so an
# up-to-date machine costs nothing; installs with apt-get when root, and
# otherwise prints the exact command and fails.
#
# `deps.sh test BUILD` also puts the SARIF tests' consumer in BUILD/npm:
# Microsoft's SARIF multitool from npm (its SDK reads our SARIF; the
# package carries the SARIF 2.1.0 JSON schema the tests validate against).
set -e
SARIF_TOOL="@microsoft/sarif-multitool-linux@5.7.0"
build_pkgs="gcc make pkg-config libdw-dev libelf-dev libunwind-dev libcapstone-dev zlib1g-dev"

missing=""
need() { missing="$missing $1"; }

case "$1" in
build)
	command -v cc >/dev/null 2>&1 || need gcc
	command -v pkg-config >/dev/null 2>&1 || need pkg-config
	if command -v pkg-config >/dev/null 2>&1; then
		pkg-config --exists libdw || need libdw-dev
		pkg-config --exists libelf || need libelf-dev
		pkg-config --exists libunwind-ptrace || need libunwind-dev
		pkg-config --exists capstone || need libcapstone-dev
		pkg-config --exists zlib || need zlib1g-dev
	else
		missing="$build_pkgs"
	fi
	;;
test)
	command -v python3 >/dev/null 2>&1 || need python3
	command -v musl-gcc >/dev/null 2>&1 || need musl-tools
	command -v valgrind >/dev/null 2>&1 || need valgrind
	command -v g++ >/dev/null 2>&1 || need g++
	command -v go >/dev/null 2>&1 || need golang-go
	command -v strace >/dev/null 2>&1 || need strace
	command -v curl >/dev/null 2>&1 || need curl
	command -v chromium >/dev/null 2>&1 || need chromium
	command -v redis-server >/dev/null 2>&1 || need redis-server
	# make bench: its workloads and the peers it compares against
	command -v redis-benchmark >/dev/null 2>&1 || need redis-tools
	command -v sqlite3 >/dev/null 2>&1 || need sqlite3
	command -v xz >/dev/null 2>&1 || need xz-utils
	command -v heaptrack >/dev/null 2>&1 || need heaptrack
	command -v gdb >/dev/null 2>&1 || need gdb	# heaptrack -p attaches with it
	command -v npm >/dev/null 2>&1 || need npm
	python3 -c "import jsonschema" >/dev/null 2>&1 || need python3-jsonschema
	command -v strip >/dev/null 2>&1 || need binutils
	[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need libc6-dev
	# the allocators the fixtures link with and LD_PRELOAD
	[ -e /usr/include/jemalloc/jemalloc.h ] || need libjemalloc-dev
	[ -e /usr/include/gperftools/tcmalloc.h ] || need libgoogle-perftools-dev
	[ -e /usr/include/mimalloc.h ] || need libmimalloc-dev
	;;
*)
	echo "usage: deps.sh build|test" >&2; exit 2 ;;
esac

# The npm package, once the Debian ones are there (npm among them).
npm_tools() {
	[ "$1" = test ] || return 0
	dir="${2:-build}/npm"
	[ -x "$dir/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool" ] && return 0
	mkdir -p "$dir"
	echo "deps: npm install $SARIF_TOOL (into $dir)"
	npm install --prefix "$dir" --no-audit --no-fund --silent "$SARIF_TOOL" >/dev/null
	chmod u+x "$dir/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool"
}

if [ -z "$missing" ]; then
	npm_tools "$@"
	exit 0
fi
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	# An empty package list (fresh machine) needs one update first.
	if ! $cmd >/dev/null 2>&1; then
		apt-get update -qq && $cmd >/dev/null
	fi
	npm_tools "$@"
else
	echo "deps: missing$missing; run as root: apt-get update && $cmd" >&2
	exit 1
fi
