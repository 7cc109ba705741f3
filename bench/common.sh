# Shared by bench/run.sh and bench/etcd.sh (sourced, not run).

# pin_versions: record tool versions now and run cairn from a copy in $RUN, so that a rebuild
# during the run cannot mix binaries. Uses TOOLS, CAIRN, RESTIC, RUN, ROOT; sets CAIRN,
# cairn_version, restic_version.
pin_versions() {
    cairn_version=n/a
    restic_version=n/a
    if [[ " $TOOLS " == *" cairn "* ]]; then
        local cairn_built commit dirty=""
        cairn_built=$(date -u -r "$CAIRN" '+%Y-%m-%d %H:%M UTC')
        cp "$CAIRN" "$RUN/cairn-bin"
        CAIRN=$RUN/cairn-bin
        cairn_version=$("$CAIRN" --version 2>/dev/null | head -n1 || true)
        commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
        [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null || true) ]] && dirty=", uncommitted changes"
        cairn_version="${cairn_version:-cairn (no --version output)}, binary built $cairn_built (git HEAD at run start: $commit$dirty)"
    fi
    if [[ " $TOOLS " == *" restic "* ]]; then
        restic_version=$("$RESTIC" version | sed -n 1p) # sed reads it all: no SIGPIPE
    fi
}
