//! `mark package worker`: the user data that turns a stock Amazon Linux 2023 or Debian instance
//! into a fleet worker. It fetches `mark` and `libonnxruntime.so` from the bucket (content-addressed
//! objects, each checked against its sha256 before use), then starts `mark worker` on the model
//! repository, which the worker fetches and verifies itself. A model update is a `mark repo push`;
//! a new `mark` is a new `mark deploy` (a new launch template version).

/// An object the script fetches: where, its sha256 (hex) and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `s3://bucket/key`.
    pub url: String,
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// sha256 of the content, lowercase hex.
    pub sha256: String,
    /// Bytes.
    pub bytes: u64,
}

/// What the worker boots with.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The model repository (`s3://bucket/prefix`).
    pub repo: String,
    /// The `mark` binary.
    pub mark: Blob,
    /// ONNX Runtime's shared library.
    pub ort: Blob,
    /// Port the worker listens on (the gateway routes to it).
    pub port: u16,
    /// The bucket's region (the worker's S3 client needs it; the CLI follows redirects, the
    /// SDK does not); checked by [`check_region`].
    pub region: String,
}

/// A region name as AWS writes them (`eu-west-1`): letters, digits and `-` only, so that it
/// can stand in the script unquoted.
pub fn check_region(r: &str) -> Result<(), String> {
    if !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(format!("region {r:?}: not a region name"))
    }
}

/// `s` as one single-quoted shell word (a quote inside cannot end it).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The user data script (bash). Overridable by the environment for a run outside EC2 (the
/// tests): `MARK_HOME` (install directory, `/opt/mark`), `MARK_LISTEN`, `MARK_IMDS_ENDPOINT`
/// (empty: no spot-notice polling), `AWS_ENDPOINT_URL` (an S3 emulator, for the CLI and the
/// worker alike), `MARK_FOREGROUND=1` (run in the foreground instead of as a systemd service).
pub fn script(b: &Boot) -> String {
    let Boot {
        repo,
        mark,
        ort,
        port,
        region,
    } = b;
    let blob = |b: &Blob| {
        format!(
            "{} {} {} {}",
            quote(&b.bucket),
            quote(&b.key),
            b.sha256,
            b.bytes
        )
    };
    let (m, o) = (blob(mark), blob(ort));
    let repo = quote(repo);
    format!(
        r#"#!/bin/bash
# MArk-rs worker on a stock Amazon Linux 2023 or Debian AMI (written by `mark package worker`).
# Fetches `mark` and libonnxruntime.so from S3, refuses either unless its sha256 matches, and
# starts `mark worker` on the model repository (which the worker fetches and verifies itself).
# The instance profile needs s3:GetObject on the repository's prefix (`mark deploy` prints it).
set -euo pipefail
MARK_HOME="${{MARK_HOME:-/opt/mark}}"
LISTEN="${{MARK_LISTEN:-0.0.0.0:{port}}}"
IMDS="${{MARK_IMDS_ENDPOINT-http://169.254.169.254}}"
REPO={repo}
export AWS_REGION="${{AWS_REGION:-{region}}}"
export AWS_DEFAULT_REGION="$AWS_REGION"
mkdir -p "$MARK_HOME"
say() {{ echo "mark boot: $*" >&2; }}
if ! command -v aws >/dev/null 2>&1; then
  # bounded: a mirror that stalls fails the boot (and the launch's pending deadline replaces it);
  # apt waits up to 5 minutes for the dpkg lock that first-boot upgrades hold
  if command -v dnf >/dev/null 2>&1; then timeout 600 dnf install -y -q awscli
  elif command -v apt-get >/dev/null 2>&1; then
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -q \
      && timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -q awscli
  else say "no aws CLI, and no dnf or apt-get to install it"; exit 1; fi
fi
# fetch BUCKET KEY SHA256 BYTES DEST: the size asked first (nothing larger is downloaded), then
# the download, its size and digest checked, then moved into place
fetch() {{
  local url="s3://$1/$2" part="$5.part.$$" got
  if [ -f "$5" ] && [ "$(sha256sum "$5" | cut -d' ' -f1)" = "$3" ]; then return 0; fi
  for try in 1 2 3 4 5; do
    if got=$(timeout 60 aws s3api head-object --bucket "$1" --key "$2" --query ContentLength --output text) \
      && [ "$got" = "$4" ] && timeout 900 aws s3 cp --only-show-errors "$url" "$part"; then break; fi
    if [ -n "$got" ] && [ "$got" != "$4" ]; then say "$url: $got bytes, expected $4: refused"; exit 1; fi
    if [ "$try" = 5 ]; then say "$url: download failed"; rm -f "$part"; exit 1; fi
    sleep $((try * 2))
  done
  got=$(stat -c %s "$part")
  if [ "$got" != "$4" ]; then say "$url: $got bytes, expected $4: refused"; rm -f "$part"; exit 1; fi
  got=$(sha256sum "$part" | cut -d' ' -f1)
  if [ "$got" != "$3" ]; then say "$url: sha256 $got, expected $3: refused"; rm -f "$part"; exit 1; fi
  chmod 755 "$part"
  mv -f "$part" "$5"
}}
fetch {m} "$MARK_HOME/mark"
fetch {o} "$MARK_HOME/libonnxruntime.so"
ENVS=(ORT_DYLIB_PATH="$MARK_HOME/libonnxruntime.so" MARK_REPO_CACHE="$MARK_HOME/repo" AWS_REGION="$AWS_REGION")
[ -n "${{AWS_ENDPOINT_URL:-}}" ] && ENVS+=(MARK_S3_ENDPOINT="$AWS_ENDPOINT_URL")
# the gateway-worker secret, when the launch template or the image puts it there
[ -r /etc/mark/worker-secret ] && ENVS+=(MARK_WORKER_SECRET_FILE=/etc/mark/worker-secret)
ARGS=(worker --model-repo "$REPO" --listen "$LISTEN" --ort-lib "$MARK_HOME/libonnxruntime.so")
[ -n "$IMDS" ] && ARGS+=(--imds-endpoint "$IMDS")
# one script runs the worker, in the foreground or as the systemd service (restarted on exit)
{{
  echo '#!/bin/bash'
  for e in "${{ENVS[@]}}"; do printf 'export %q\n' "$e"; done
  printf 'exec %q' "$MARK_HOME/mark"; printf ' %q' "${{ARGS[@]}}"; echo
}} >"$MARK_HOME/run-worker"
chmod 755 "$MARK_HOME/run-worker"
if [ -z "${{MARK_FOREGROUND:-}}" ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then
  printf '%s\n' "[Unit]" "Description=MArk-rs worker" "After=network-online.target" \
    "[Service]" "ExecStart=$MARK_HOME/run-worker" "Restart=always" "RestartSec=2" \
    "LimitNOFILE=65536" "[Install]" "WantedBy=multi-user.target" \
    >/etc/systemd/system/mark-worker.service
  systemctl daemon-reload
  systemctl enable --now mark-worker.service
else
  exec "$MARK_HOME/run-worker"
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(name: &str) -> Blob {
        Blob {
            url: format!("s3://b/p/objects/{name}"),
            bucket: "b".into(),
            key: format!("p/objects/{name}"),
            sha256: name.repeat(64 / name.len()),
            bytes: 42,
        }
    }

    #[test]
    fn the_script_checks_both_digests_and_quotes_what_came_from_outside() {
        let s = script(&Boot {
            repo: "s3://models/prod'; rm -rf /".into(),
            mark: blob("a"),
            ort: blob("b"),
            port: 8123,
            region: "eu-west-1".into(),
        });
        assert!(s.starts_with("#!/bin/bash\n"), "{s}");
        assert!(
            s.contains("REPO='s3://models/prod'\\''; rm -rf /'\n"),
            "{s}"
        );
        assert!(s.contains(&format!(
            "fetch 'b' 'p/objects/a' {} 42 \"$MARK_HOME/mark\"",
            "a".repeat(64)
        )));
        assert!(s.contains(&format!(
            "fetch 'b' 'p/objects/b' {} 42 \"$MARK_HOME/libonnxruntime.so\"",
            "b".repeat(64)
        )));
        assert!(s.contains("AWS_REGION:-eu-west-1}"), "{s}");
        assert!(s.contains("0.0.0.0:8123"), "{s}");
        // no secret travels in the user data
        assert!(!s.contains("MARK_ADMIN_TOKEN"));
    }
}
