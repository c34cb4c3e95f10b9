#!/usr/bin/env bash
# Fails when a file of this repository cites a document the repository does not hold.
#
# Someone who clones the repository must be able to follow every reference in it. So
# comments, docs and messages state the fact itself, or point at ARCHITECTURE.md or a
# page under docs/. This check finds:
#   * citations of design documents that live outside the tree (an all-caps SPEC,
#     CONTRACTS.md, DESIGN.md, STYLE.md, MISSION.md, DEPLOYMENT_GUIDE.md) and of
#     "the guide" / "the deployment guide" as a document;
#   * links to docs/<page>.md (or ARCHITECTURE.md) that do not exist.
#
#   scripts/check-no-external-refs.sh             check every tracked text file
#   scripts/check-no-external-refs.sh FILE...     check these files only
#   scripts/check-no-external-refs.sh --self-test prove the check catches what it must
set -euo pipefail
cd "$(dirname "$0")/.."

self="scripts/check-no-external-refs.sh"

# Built from pieces so this file does not match itself.
caps_spec='\bSP''EC\b'
docs_md='\b(CONT''RACTS|DES''IGN|STY''LE|MIS''SION|DEPLOYMENT_GU''IDE|SP''EC)\.md\b'
guide='([Dd]eployment gu''ide|\b[Tt]he gu''ide\b|gu''ide'"'"'s\b|\bgu''ide [Pp]hase)'
pattern="($caps_spec|$docs_md|$guide)"

files_to_check() {
    if [ "$#" -gt 0 ]; then
        printf '%s\n' "$@"
    elif git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files
    else
        find . -type f -not -path './.git/*' -not -path './target/*' | sed 's|^\./||'
    fi
}

check() {
    local failed=0 f hits link
    while IFS= read -r f; do
        [ -f "$f" ] || continue
        case "$f" in
            "$self" | Cargo.lock) continue ;;
        esac
        # -I skips binary files.
        if hits=$(grep -nIE "$pattern" "$f"); then
            while IFS= read -r line; do
                echo "$f:$line"
            done <<<"$hits"
            failed=1
        fi
        # References to the repository's own docs must resolve.
        while IFS= read -r link; do
            [ -n "$link" ] || continue
            if [ ! -f "$link" ]; then
                echo "$f: refers to \`$link\`, which is not in the repository"
                failed=1
            fi
        done < <(grep -ohIE '\bdocs/[A-Za-z0-9_-]+\.md\b' "$f" | sort -u || true)
    done < <(files_to_check "$@")
    if [ "$failed" -ne 0 ]; then
        echo "error: files above cite documents the repository does not hold" >&2
        echo "hint: state the fact itself, or point at ARCHITECTURE.md or a page under docs/ (create it if needed)" >&2
        return 1
    fi
    return 0
}

self_test() {
    local dir
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' RETURN
    printf '// fine: see docs/README.md\n' >"$dir/good.rs"
    local -a bad=(
        "// exit codes as SP""EC §1 says"
        "// the workarounds CONT""RACTS.md lists"
        "//! the deployment gu""ide's Phase 4"
        "# as in the gu""ide"
        "// see docs/no-such-page.md"
    )
    local i=0 line
    for line in "${bad[@]}"; do
        i=$((i + 1))
        printf '%s\n' "$line" >"$dir/bad$i.rs"
        if check "$dir/bad$i.rs" >/dev/null 2>&1; then
            echo "self-test: the check missed: $line" >&2
            return 1
        fi
    done
    if ! check "$dir/good.rs" >/dev/null 2>&1; then
        echo "self-test: the check rejected a clean file" >&2
        return 1
    fi
    echo "self-test: ok ($i citations caught, a clean file passed)"
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
else
    check "$@"
fi
