# Sourced by scripts/test and bench/run: find the newest installed CPython of a version.
find_python() {  # $1 = 3.11, 3.12 or 3.13; prints the interpreter's path, or nothing
    local version=$1 candidate found=""
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in $(ls -d "$(pyenv root)"/versions/"$version".* 2>/dev/null | sort -V); do
            [ -x "$candidate/bin/python$version" ] && found="$candidate/bin/python$version"
        done
    fi
    if [ -z "$found" ]; then
        for candidate in "python$version" python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
               [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
                found=$(command -v "$candidate"); break
            fi
        done
    fi
    echo "$found"
}
