# Shared by the bench/*.sh scripts (sourced, not run).

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

# need_tools: every tool of TOOLS is there; cairn (CAIRN, default DEFAULT_CAIRN) is built if
# missing and a note is logged if it is older than the sources. Uses log and die.
need_tools() {
    local tool newer
    for tool in $TOOLS; do
        case $tool in
        cairn)
            if [[ ! -x $CAIRN ]]; then
                [[ $CAIRN == "$DEFAULT_CAIRN" ]] || die "CAIRN_BIN=$CAIRN is not executable"
                log "target/release/cairn is missing: building it (cargo build --release -p cairn)"
                (cd "$ROOT" && cargo build --release -p cairn) >&2 || die "cargo build failed"
            fi
            newer=$(find "$ROOT/cli" "$ROOT/format" "$ROOT/store" -name '*.rs' -newer "$CAIRN" 2>/dev/null | head -n1 || true)
            [[ -z $newer ]] || log "note: $CAIRN is older than some sources (e.g. $newer); not rebuilding"
            ;;
        restic) command -v "$RESTIC" >/dev/null || die "restic not found ($RESTIC)" ;;
        rustic) [[ -x ${RUSTIC:-} ]] || die "rustic not found (${RUSTIC:-}); build it with: cargo install rustic-rs --locked --no-default-features --root /tmp/rustic" ;;
        borg) command -v "${BORG:-borg}" >/dev/null || die "borg not found (${BORG:-borg}); apt-get install borgbackup" ;;
        *) die "unknown tool '$tool' in BENCH_TOOLS" ;;
        esac
    done
}
