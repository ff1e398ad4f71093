#!/usr/bin/env bash
# The kernel series is generated: kernel/ holds the driver, headers, backends,
# tests and doc as plain files in kernel-tree paths, kernel/edits/ the few
# lines that change existing files, and kernel/series the commits. This script
# builds those commits on the pinned pristine tree and exports them with
# `git format-patch` into patches/kernel/, byte for byte reproducibly.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
# shellcheck source=tools/kernel.sh
source "$LW_ROOT/tools/kernel.sh"

KSRC=$LW_ROOT/kernel
SERIES=$KSRC/series
OUT=$LW_ROOT/patches/kernel

usage() {
    cat <<USAGE
Usage: tools/kernel-series.sh [--tree DIR] COMMAND

Commands:
  export        build the commits of kernel/series on the pristine base tree and
                write them to patches/kernel/ with git format-patch (replaces it)
  check         export into a temporary directory and fail unless it equals
                patches/kernel/; also check that the patches of each target
                (list um, list wasm) apply to the base on their own
  list TARGET   print the patch files of TARGET (um or wasm), in order: the
                commits marked "all" or TARGET in kernel/series

Options:
  --tree DIR    a git tree of the base whose tag lw-pristine is the pristine
                linux-source (default: $LW_BUILD/linux-6.12, made if missing,
                shared with the um build)

The commits use a fixed author, committer and date (kernel/series) and are
exported with --zero-commit --no-signature --full-index -U1, so the same
kernel/ gives the same bytes on any machine. Edit kernel/, never patches/kernel/.
USAGE
}

# --- kernel/series -----------------------------------------------------------

S_BASE_PKG='' S_BASE_VER='' S_AUTHOR='' S_DATE=''
S_TARGET=() S_SUBJECT=() S_FILES=() S_EDITS=() S_BODY=()

series_die() { lw_die "kernel/series line $1: $2"; }

parse_series() {
    [ -f "$SERIES" ] || lw_die "no $SERIES"
    local line n=0 i=-1
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in
            '#'* | '') continue ;;
            'base '*)
                read -r _ S_BASE_PKG S_BASE_VER <<<"$line"
                [ -n "$S_BASE_VER" ] || series_die "$n" "base wants PACKAGE VERSION" ;;
            'author '*) S_AUTHOR=${line#author } ;;
            'date '*) S_DATE=${line#date } ;;
            'commit '*)
                i=$((i + 1))
                local head=${line#commit }
                S_TARGET[i]=${head%%:*}
                S_SUBJECT[i]=${head#*: }
                S_FILES[i]='' S_EDITS[i]='' S_BODY[i]=''
                case "${S_TARGET[i]}" in all | um | wasm) ;; *) series_die "$n" "target '${S_TARGET[i]}' is not all, um or wasm" ;; esac
                if [ "${S_SUBJECT[i]}" = "$head" ] || [ -z "${S_SUBJECT[i]}" ]; then
                    series_die "$n" "want 'commit TARGET: SUBJECT'"
                fi
                # Longer, and format-patch folds the Subject: header of [PATCH n/m].
                [ ${#S_SUBJECT[i]} -le 55 ] || series_die "$n" "subject longer than 55 characters" ;;
            'files: '* | 'edits: '* | '|'*)
                [ "$i" -ge 0 ] || series_die "$n" "'${line%% *}' before the first commit"
                case "$line" in
                    'files: '*) S_FILES[i]+=" ${line#files: }" ;;
                    'edits: '*) S_EDITS[i]+=" ${line#edits: }" ;;
                    '|') S_BODY[i]+=$'\n' ;;
                    '| '*) S_BODY[i]+="${line#| }"$'\n' ;;
                    *) series_die "$n" "a body line starts with '| ' or is '|' alone" ;;
                esac ;;
            *) series_die "$n" "unknown line: $line" ;;
        esac
    done <"$SERIES"
    if [ -z "$S_BASE_VER" ] || [ -z "$S_AUTHOR" ] || [ -z "$S_DATE" ]; then
        lw_die "kernel/series needs base, author and date lines"
    fi
    [ ${#S_TARGET[@]} -gt 0 ] || lw_die "kernel/series has no commit"

    # Every file is added by exactly one commit; every named file exists.
    local f e listed=() seen
    for i in "${!S_TARGET[@]}"; do
        for f in ${S_FILES[i]}; do
            [ -f "$KSRC/$f" ] || lw_die "kernel/series: commit $((i + 1)) adds $f, but kernel/$f does not exist"
            listed+=("$f")
        done
        for e in ${S_EDITS[i]}; do
            [ -f "$KSRC/edits/$e" ] || lw_die "kernel/series: commit $((i + 1)) names edits/$e, which does not exist"
        done
    done
    seen=$(printf '%s\n' "${listed[@]}" | sort | uniq -d)
    [ -z "$seen" ] || lw_die "kernel/series: added by more than one commit: $seen"
    local stray
    stray=$(comm -13 <(printf '%s\n' "${listed[@]}" | sort) \
        <(cd "$KSRC" && find . -type f ! -path ./series ! -path './edits/*' | sed 's|^\./||' | sort))
    [ -z "$stray" ] || lw_die "kernel/series: no commit adds these files under kernel/: $stray"
}

# --- building ----------------------------------------------------------------

# git with no user or system configuration (which could change the output),
# in the base tree, with our own index.
kgit() {
    GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git -C "$TREE" -c core.autocrlf=false -c gc.auto=0 "$@"
}

# The paths a diff touches.
diff_paths() { sed -nE 's|^diff --git a/([^ ]+) b/.*|\1|p' "$1"; }

# stage DIR: DIR holds every file of kernel/ as the commit that adds it adds
# it: the copy under kernel/ with every later commit's edits to it undone.
stage() {
    local dir=$1 i f e p inc
    mkdir -p "$dir"
    git init -q "$dir"
    for i in "${!S_TARGET[@]}"; do
        for f in ${S_FILES[i]}; do
            mkdir -p "$dir/$(dirname "$f")"
            cp "$KSRC/$f" "$dir/$f"
        done
    done
    for ((i = ${#S_TARGET[@]} - 1; i >= 0; i--)); do
        for e in ${S_EDITS[i]}; do
            inc=()
            while IFS= read -r p; do
                [ -f "$dir/$p" ] && inc+=("--include=$p")
            done < <(diff_paths "$KSRC/edits/$e")
            [ ${#inc[@]} -gt 0 ] || continue
            git -C "$dir" apply -R "${inc[@]}" "$KSRC/edits/$e" ||
                lw_die "kernel/edits/$e does not reverse-apply to the files under kernel/ (is a hunk stale?)"
        done
    done
}

# build_commits STAGE INDEX WANT...: builds the commits whose target is one of
# WANT on lw-pristine, using the index file INDEX; prints the last commit.
build_commits() {
    local stage=$1 index=$2 i f e blob tree parent msg
    shift 2
    local want=" $* "
    export GIT_INDEX_FILE=$index
    kgit read-tree lw-pristine
    parent=$(kgit rev-parse 'lw-pristine^{commit}')
    local name=${S_AUTHOR% <*} email=${S_AUTHOR##*<}
    email=${email%>}
    for i in "${!S_TARGET[@]}"; do
        [[ "$want" == *" ${S_TARGET[i]} "* ]] || continue
        for f in ${S_FILES[i]}; do
            blob=$(kgit hash-object -w --no-filters "$stage/$f")
            kgit update-index --add --cacheinfo "100644,$blob,$f"
        done
        for e in ${S_EDITS[i]}; do
            kgit apply --cached "$KSRC/edits/$e" ||
                lw_die "kernel/edits/$e does not apply at commit $((i + 1)) (${S_SUBJECT[i]})"
        done
        tree=$(kgit write-tree)
        msg=$(printf '%s\n\n%s\nSigned-off-by: %s\n' "${S_SUBJECT[i]}" "${S_BODY[i]}" "$S_AUTHOR")
        parent=$(GIT_AUTHOR_NAME=$name GIT_AUTHOR_EMAIL=$email GIT_AUTHOR_DATE=$S_DATE \
            GIT_COMMITTER_NAME=$name GIT_COMMITTER_EMAIL=$email GIT_COMMITTER_DATE=$S_DATE \
            kgit commit-tree "$tree" -p "$parent" <<<"$msg")
    done
    unset GIT_INDEX_FILE
    printf '%s\n' "$parent"
}

# export_to DIR: the whole series as patches in DIR.
export_to() {
    local dir=$1 tmp tip f have want
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'" RETURN
    stage "$tmp/stage"
    tip=$(build_commits "$tmp/stage" "$tmp/index" all um wasm)
    # After the last commit every file equals its copy under kernel/.
    for f in $(printf '%s\n' "${S_FILES[@]}"); do
        have=$(kgit rev-parse "$tip:$f")
        want=$(kgit hash-object --no-filters "$KSRC/$f")
        [ "$have" = "$want" ] || lw_die "after the series, $f differs from kernel/$f (do the edits match the files?)"
    done
    mkdir -p "$dir"
    rm -f "$dir"/*.patch
    kgit format-patch -q --zero-commit --no-signature --full-index -U1 --no-renames \
        --subject-prefix=PATCH -o "$dir" "lw-pristine..$tip" >/dev/null
}

# The pinned base: the installed linux-source package must be the pinned one
# for the export to be byte-exact.
base_pinned() {
    local have
    have=$(dpkg-query -W -f='${Version}' "$S_BASE_PKG" 2>/dev/null || true)
    [ "$have" = "$S_BASE_VER" ]
}

# Patch bytes that do not depend on the base's exact contents: blob ids and
# hunk line numbers left out.
normalise() { sed -E -e '/^index [0-9a-f]+\.\.[0-9a-f]+/d' -e 's/^@@ -[0-9,]+ \+[0-9,]+ @@/@@/' "$1"; }

# list TARGET: the patch files of TARGET, by position in the series.
list_target() {
    local target=$1 i patches
    case "$target" in um | wasm) ;; *) lw_die "list: target must be um or wasm, not '$target'" ;; esac
    mapfile -t patches < <(find "$OUT" -maxdepth 1 -name '[0-9][0-9][0-9][0-9]-*.patch' | sort)
    [ ${#patches[@]} -eq ${#S_TARGET[@]} ] ||
        lw_die "patches/kernel/ has ${#patches[@]} patches, kernel/series ${#S_TARGET[@]} commits: run tools/kernel-series.sh export"
    for i in "${!S_TARGET[@]}"; do
        case "${S_TARGET[i]}" in all | "$target") printf '%s\n' "${patches[i]}" ;; esac
    done
}

check() {
    local tmp rc=0 f t
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'" RETURN
    export_to "$tmp/out"
    if base_pinned; then
        diff -ru "$OUT" "$tmp/out" >"$tmp/diff" || rc=1
    else
        lw_warn "$S_BASE_PKG is not the pinned $S_BASE_VER: comparing without blob ids and line numbers"
        for f in "$tmp"/out/*.patch "$OUT"/*.patch; do
            if [ ! -f "$OUT/${f##*/}" ] || [ ! -f "$tmp/out/${f##*/}" ]; then
                echo "only in one of the two: ${f##*/}" >>"$tmp/diff"
                rc=1
                continue
            fi
            diff -u <(normalise "$OUT/${f##*/}") <(normalise "$tmp/out/${f##*/}") >>"$tmp/diff" || rc=1
        done
    fi
    if [ "$rc" -ne 0 ]; then
        head -n 60 "$tmp/diff" >&2
        lw_info "patches/kernel/ is not the export of kernel/: run tools/kernel-series.sh export and commit it"
        return 1
    fi
    # Each target's patches apply to the base without the other target's.
    for t in um wasm; do
        GIT_INDEX_FILE=$tmp/index-$t kgit read-tree lw-pristine
        while IFS= read -r f; do
            GIT_INDEX_FILE=$tmp/index-$t kgit apply --cached "$f" ||
                { lw_info "${f##*/} does not apply without the commits of the other target"; return 1; }
        done < <(list_target "$t")
    done
}

TREE=$LW_BUILD/linux-6.12
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --tree) TREE=${2:?--tree needs a directory}; shift 2 ;;
        --tree=*) TREE=${1#--tree=}; shift ;;
        *) break ;;
    esac
done
cmd=${1:-}
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
parse_series
case "$cmd" in
    list)
        [ $# -eq 1 ] || { echo "usage: tools/kernel-series.sh list um|wasm" >&2; exit 2; }
        list_target "$1" ;;
    export | check)
        [ $# -eq 0 ] || { echo "error: $cmd takes no arguments" >&2; exit 2; }
        command -v git >/dev/null || lw_need_apt git
        if [ "$TREE" = "$LW_BUILD/linux-6.12" ]; then
            lw_kernel_pristine 6.12 "$TREE"
        fi
        kgit rev-parse -q --verify 'lw-pristine^{commit}' >/dev/null ||
            lw_die "$TREE is not a kernel tree with the tag lw-pristine"
        if [ "$cmd" = export ]; then
            base_pinned || lw_die "the base must be $S_BASE_PKG $S_BASE_VER (kernel/series), found $(dpkg-query -W -f='${Version}' "$S_BASE_PKG" 2>/dev/null || echo none); install it or change the pin"
            export_to "$OUT"
            lw_info "wrote $(find "$OUT" -name '*.patch' | wc -l) patches to patches/kernel/"
        else
            check
            lw_info "patches/kernel/ equals the export of kernel/"
        fi ;;
    *) echo "error: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
