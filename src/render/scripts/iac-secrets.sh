# iac-secrets AGE IDENTITY [NAME SOURCE DEST OWNER GROUP MODE]...
# Decrypts each SOURCE (an age file in the Nix store) with the host's SSH key IDENTITY and puts
# the value at DEST with OWNER:GROUP and MODE, atomically: a temporary file in DEST's directory,
# owner and mode set before the rename, so a reader sees the old file or the whole new one.
# DEST's directory must be owned by root and writable by root only (created 0751 if missing).
# A secret that fails is named on stderr and fails the unit after the others were tried.
set -u
umask 077
if [ "$#" -lt 2 ] || [ $(( ($# - 2) % 6 )) -ne 0 ]; then
  echo "iac-secrets: usage: iac-secrets AGE IDENTITY [NAME SOURCE DEST OWNER GROUP MODE]..." >&2
  exit 2
fi
age=$1 identity=$2
shift 2
failed=
fail() {
  echo "iac-secrets: secret $name: $1" >&2
  failed="$failed $name"
}
while [ "$#" -gt 0 ]; do
  name=$1 src=$2 dest=$3 owner=$4 group=$5 mode=$6
  shift 6
  dir=${dest%/*}
  if [ -z "$dir" ]; then dir=/; fi
  if [ ! -e "$dir" ]; then
    (umask 022 && mkdir -p "$dir") && chmod 0751 "$dir" || { fail "cannot create $dir"; continue; }
  fi
  if [ ! -d "$dir" ] || [ -z "$(find "$dir" -prune -user 0 ! -perm -g+w ! -perm -o+w)" ]; then
    fail "refusing to write into $dir: it must be a directory owned by root and writable by root only"
    continue
  fi
  tmp=$(mktemp "$dir/.iac-secret.XXXXXXXX") || { fail "cannot create a temporary file in $dir"; continue; }
  if ! "$age" --decrypt -i "$identity" "$src" > "$tmp"; then
    rm -f "$tmp"
    fail "cannot decrypt $src with $identity (is the file encrypted to this host's key? iac secrets rekey)"
    continue
  fi
  if [ ! -s "$tmp" ]; then
    rm -f "$tmp"
    fail "$src decrypts to nothing"
    continue
  fi
  if ! chown "$owner:$group" "$tmp" || ! chmod "$mode" "$tmp" || ! mv -f "$tmp" "$dest"; then
    rm -f "$tmp"
    fail "cannot install $dest as $owner:$group $mode"
    continue
  fi
  echo "iac-secrets: secret $name: $dest ($owner:$group $mode)"
done
if [ -n "$failed" ]; then
  echo "iac-secrets: failed:$failed" >&2
  exit 1
fi
