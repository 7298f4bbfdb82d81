#!/usr/bin/env bash
# Prints the path of a Python interpreter >= 3.12 that really runs (pyenv shims may refuse to).
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for name in python3.13 python3.12 python3; do
    if command -v "$name" >/dev/null 2>&1 && ok "$name"; then command -v "$name"; exit 0; fi
done
roots=()
command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root 2>/dev/null)")
roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
for root in "${roots[@]}"; do
    for candidate in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
        for exe in "$candidate"/bin/python3.1[2-9] "$candidate"/bin/python3; do
            if [ -x "$exe" ] && ok "$exe"; then echo "$exe"; exit 0; fi
        done
    done
done
echo "error: no Python >= 3.12 found (tried python3.13, python3.12, python3 and pyenv's versions/3.1[2-9]*); install one, e.g. 'pyenv install 3.12'" >&2
exit 1
