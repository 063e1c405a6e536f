//! The on-target scripts that deliver a host's pushed secrets (hosts without a `host_key`,
//! docs/secrets.md "Delivery"): [`PUSH`] writes them before the switch, [`PRUNE`] removes the
//! ones the host no longer reads once its new system is confirmed, and [`PUSHED_RECORD`] is
//! what ties the two together. Fixed POSIX `sh` like every script in `remote.rs` (which
//! re-exports these): paths, owners and modes are arguments, the values stdin.

/// Where a host keeps the paths of the secret files iac pushed to it, one per line: what
/// [`PRUNE`] may remove once the host no longer reads them, and nothing else. Persistent, as the
/// pushed files are (`/var/lib/secrets/NAME` by default): a record on `/run` would be gone after
/// a reboot while the files stay. In a directory of iac's own (created 0700), not in a secrets
/// directory: those are the inventory's to choose, several per host, and may be readable by a
/// service's group. The record decides what root deletes, so both scripts refuse it unless it
/// and its directory are root's and writable by root only (`unsafe-record`).
pub const PUSHED_RECORD: &str = "/var/lib/iac/pushed-secrets";

/// `iac-push-secrets RECORD [DEST OWNER GROUP MODE LENGTH]...`: the values arrive on stdin, one
/// after the other, LENGTH bytes each (never on a command line, where `ps` would show them).
/// First every DEST is added to RECORD ([`PUSHED_RECORD`]; written to a temporary file and
/// renamed over it), so a file iac writes is always listed before it exists, even when the
/// switch that follows is rolled back; `ok: RECORD`, or `unsafe-record`/`failed` and exit 1
/// before any value is written. Then each value is written atomically: a temporary file in
/// DEST's directory (created 0751 when missing; it must be owned by root and writable by root
/// only), owner and mode set, renamed over DEST. One line per secret, `ok: DEST`,
/// `unsafe-directory: DEST` or `failed: DEST`; exits 1 when any failed. `dd bs=1` reads exactly
/// LENGTH bytes of the pipe (POSIX has no `head -c`).
pub const PUSH: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"; export PATH
set -u
umask 077
record=$1
shift
unsafe() { [ -z "$(find "$1" -prune -type "$2" -user 0 ! -perm -g+w ! -perm -o+w 2>/dev/null)" ]; }
rdir=${record%/*}
if [ ! -e "$rdir" ]; then mkdir -p "$rdir"; fi
if unsafe "$rdir" d || { { [ -e "$record" ] || [ -L "$record" ]; } && unsafe "$record" f; }; then
  echo "unsafe-record: $record"
  exit 1
fi
list=$(cat "$record" 2>/dev/null || true)
k=0
for a in "$@"; do
  if [ "$((k % 5))" -eq 0 ] && ! printf '%s\n' "$list" | grep -Fxq -- "$a"; then
    list="$list
$a"
  fi
  k=$((k + 1))
done
tmp=$(mktemp "$record.XXXXXXXX") || { echo "failed: $record"; exit 1; }
if printf '%s\n' "$list" | sed '/^$/d' > "$tmp" && chmod 0600 "$tmp" && mv -f "$tmp" "$record"; then
  echo "ok: $record"
else
  rm -f "$tmp"
  echo "failed: $record"
  exit 1
fi
failed=0
while [ "$#" -ge 5 ]; do
  dest=$1 owner=$2 group=$3 mode=$4 len=$5
  shift 5
  dir=${dest%/*}
  if [ -z "$dir" ]; then dir=/; fi
  if [ ! -e "$dir" ]; then
    (umask 022 && mkdir -p "$dir") && chmod 0751 "$dir"
  fi
  if [ ! -d "$dir" ] || [ -z "$(find "$dir" -prune -user 0 ! -perm -g+w ! -perm -o+w)" ]; then
    dd bs=1 count="$len" of=/dev/null 2>/dev/null
    echo "unsafe-directory: $dest"
    failed=1
    continue
  fi
  tmp=$(mktemp "$dir/.iac-secret.XXXXXXXX") || { dd bs=1 count="$len" of=/dev/null 2>/dev/null; echo "failed: $dest"; failed=1; continue; }
  if dd bs=1 count="$len" of="$tmp" 2>/dev/null && [ "$(($(wc -c < "$tmp")))" -eq "$len" ] &&
    chown "$owner:$group" "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dest"; then
    echo "ok: $dest"
  else
    rm -f "$tmp"
    echo "failed: $dest"
    failed=1
  fi
done
exit "$failed"
"#;

/// `iac-prune-secrets RECORD PUSHED... -- KEPT...`: runs once the new system is confirmed (or
/// needed no switch), never before: until then a rollback may bring back a system that reads
/// the old files. PUSHED are the files this deploy pushed, KEPT the host's other secret files
/// (decrypted at activation), which are never removed even when RECORD lists them. RECORD
/// ([`PUSHED_RECORD`]) is rewritten first, atomically, to exactly PUSHED; then every path the
/// old record lists and the host no longer reads is removed when it is a regular file in a
/// directory owned by root and writable by root only: `removed: PATH`. A symlink or anything
/// else that is not a regular file is left alone and forgotten (`not-a-file: PATH`: iac writes
/// only regular files, so someone else put it there; `rm` would remove a link itself, never
/// follow it, but it is not iac's to remove); a path already gone is forgotten silently. A file
/// in an unsafe directory (`unsafe-directory: PATH`) or that `rm` could not remove (`failed:
/// PATH`) is listed in the record again, for the next deploy, and the script exits 1. Only
/// absolute, normalised lines of the record are read. No record and nothing pushed: nothing to
/// do, nothing created.
pub const PRUNE: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"; export PATH
set -u
umask 077
record=$1
shift
if [ ! -e "$record" ] && [ ! -L "$record" ] && [ "${1:---}" = -- ]; then exit 0; fi
unsafe() { [ -z "$(find "$1" -prune -type "$2" -user 0 ! -perm -g+w ! -perm -o+w 2>/dev/null)" ]; }
rdir=${record%/*}
if [ ! -e "$rdir" ]; then mkdir -p "$rdir"; fi
if unsafe "$rdir" d || { { [ -e "$record" ] || [ -L "$record" ]; } && unsafe "$record" f; }; then
  echo "unsafe-record: $record"
  exit 1
fi
old=$(cat "$record" 2>/dev/null || true)
pushed= keep= others=0
for a in "$@"; do
  if [ "$a" = -- ]; then others=1; continue; fi
  if [ "$others" = 0 ]; then pushed="$pushed$a
"; fi
  keep="$keep$a
"
done
write() {
  tmp=$(mktemp "$record.XXXXXXXX") || return 1
  if printf '%s' "$1" > "$tmp" && chmod 0600 "$tmp" && mv -f "$tmp" "$record"; then return 0; fi
  rm -f "$tmp"
  return 1
}
if ! write "$pushed"; then
  echo "failed: $record"
  exit 1
fi
again= failed=0
while IFS= read -r p; do
  case "$p" in
    /*/../*|*/..|*/./*|*/.|*//*) continue ;;
    /?*) ;;
    *) continue ;;
  esac
  if printf '%s' "$keep" | grep -Fxq -- "$p"; then continue; fi
  dir=${p%/*}
  if [ -z "$dir" ]; then dir=/; fi
  if [ -L "$p" ]; then
    echo "not-a-file: $p"
  elif [ ! -e "$p" ]; then
    :
  elif [ ! -f "$p" ]; then
    echo "not-a-file: $p"
  elif unsafe "$dir" d; then
    echo "unsafe-directory: $p"
    again="$again$p
"
    failed=1
  elif rm -f -- "$p"; then
    echo "removed: $p"
  else
    echo "failed: $p"
    again="$again$p
"
    failed=1
  fi
done <<EOF
$old
EOF
if [ -n "$again" ] && ! write "$pushed$again"; then
  echo "failed: $record"
  exit 1
fi
exit "$failed"
"#;

/// What [`PRUNE`] said: the files it removed, and every other line (`not-a-file`,
/// `unsafe-directory`, `failed`, `unsafe-record`), in its order.
pub fn pruned(output: &str) -> (Vec<&str>, Vec<&str>) {
    let mut removed = Vec::new();
    let mut other = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("removed: ") {
            Some(path) => removed.push(path),
            None => other.push(line),
        }
    }
    (removed, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruned_separates_the_removed_files_from_the_rest() {
        let out = "removed: /s/a\nnot-a-file: /s/l\n\nremoved: /s/b\nunsafe-directory: /o/x\n";
        assert_eq!(pruned(out), (vec!["/s/a", "/s/b"], vec!["not-a-file: /s/l", "unsafe-directory: /o/x"]));
        assert_eq!(pruned(""), (vec![], vec![]));
    }

    #[test]
    fn the_record_is_an_absolute_path_in_a_directory_of_its_own() {
        assert!(PUSHED_RECORD.starts_with("/var/lib/iac/") && !PUSHED_RECORD.contains("/secrets/"));
    }
}
