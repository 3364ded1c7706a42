#!/usr/bin/env bash
# Start the testbed on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager (garbage
# collector + namespace controllers), LocalStack and moto_server. Binaries come from build.sh.
# State (certs, data, logs, pid files, kubeconfig, env) goes to $STACKPILOT_TESTBED_DIR
# (default /tmp/stackpilot-testbed). Components already up and healthy are left alone.
# Usage: up.sh [--no-aws | --only-aws]      then: source "$STACKPILOT_TESTBED_DIR/env"
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_kube=1 want_aws=1
for a in "$@"; do
  case "$a" in
    --no-aws) want_aws=0 ;;
    --only-aws) want_kube=0 ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown argument: $a" ;;
  esac
done
((want_kube || want_aws)) || die "--no-aws and --only-aws exclude each other"

START_TIMEOUT="${START_TIMEOUT:-120}"
mkdir -p "$STATE"/{run,logs}
PKI="$STATE/pki"
t_start=$SECONDS
started=()

on_exit() {
  local rc=$?
  if ((rc != 0)) && ((${#started[@]} > 0)); then
    log "start failed; stopping what this run started (${started[*]}); logs stay in $STATE/logs"
    stop_components "${started[@]}"
  fi
}
trap on_exit EXIT

# A port nobody listens on, below the kernel's ephemeral range so that outgoing connections
# cannot take it between now and the bind.
declare -A taken=()
free_port() { # <variable to set>
  local p _
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    [[ -z "${taken[$p]:-}" ]] || continue
    if ! ss -Htan "( sport = :$p )" | grep -q .; then
      taken[$p]=1
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "no free port found"
}

start() { # <name> <match> <command...>: start detached in its own session, log to logs/<name>.log
  local name="$1" match="$2" pid
  shift 2
  : >"$STATE/logs/$name.log"
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/run/$name.pid"
  echo "$match" >"$STATE/run/$name.match"
  started+=("$name")
  log "started $name (pid $pid, log $STATE/logs/$name.log)"
}

wait_for() { # <name> <description> <check command...>
  local name="$1" what="$2" deadline=$((SECONDS + START_TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! running_pid "$name" >/dev/null; then
      log "$name exited before $what; last lines of $STATE/logs/$name.log:"
      tail -n 40 "$STATE/logs/$name.log" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name: no $what after ${START_TIMEOUT}s; last lines of $STATE/logs/$name.log:"
      tail -n 40 "$STATE/logs/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- certificates
gen_pki() {
  [[ -s "$PKI/sa.pub" ]] && return 0
  local tmp="$PKI.tmp" days=3650
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (
    cd "$tmp"
    umask 077
    newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ca() { # <name> <CN>
      newkey "$1.key"
      openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days "$days" -out "$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    }
    leaf() { # <name> <CA name> <subject> <extensions>
      newkey "$1.key"
      openssl req -new -key "$1.key" -subj "$3" -out "$1.csr"
      printf '%s\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    ca serving-ca stackpilot-testbed-serving-ca
    leaf serving serving-ca /CN=localhost \
      "$(printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature' \
        'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1')"
    ca client-ca stackpilot-testbed-client-ca
    leaf admin client-ca "/O=system:masters/CN=stackpilot-admin" \
      "$(printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth')"
    newkey sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    rm -f ./*.srl
  )
  rm -rf "$PKI"
  mv "$tmp" "$PKI"
  log "generated certificates in $PKI"
}

write_kubeconfig() { # <apiserver port>
  local f="$STATE/kubeconfig"
  umask 077
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stackpilot-testbed
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority-data: $(base64 -w0 "$PKI/serving-ca.crt")
users:
- name: stackpilot-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI/admin.crt")
    client-key-data: $(base64 -w0 "$PKI/admin.key")
contexts:
- name: stackpilot-testbed
  context:
    cluster: stackpilot-testbed
    user: stackpilot-admin
current-context: stackpilot-testbed
EOF
  mv "$f.tmp" "$f"
}

kcurl() { # <path>: GET on the API server as admin
  curl -sf --max-time 5 --cacert "$PKI/serving-ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$(port_of kube-apiserver)$1"
}
etcd_healthy() { curl -sf --max-time 3 "http://127.0.0.1:$(port_of etcd)/health" | grep -q '"health":"true"'; }
apiserver_ready() { [[ "$(kcurl /readyz)" == ok ]] && kcurl /api/v1/namespaces/default >/dev/null; }
kcm_healthy() { [[ "$(curl -sfk --max-time 3 "https://127.0.0.1:$(port_of kube-controller-manager)/healthz")" == ok ]]; }
kube_healthy() {
  local c
  for c in "${KUBE_COMPONENTS[@]}"; do running_pid "$c" >/dev/null || return 1; done
  etcd_healthy && apiserver_ready && kcm_healthy
}

# ---------------------------------------------------------------- kube
up_kube() {
  if kube_healthy; then
    log "kube already up: https://127.0.0.1:$(port_of kube-apiserver)"; return 0
  fi
  stop_components kube-controller-manager kube-apiserver etcd # leftovers of a partial start
  local b
  for b in "$ETCD_BIN/etcd" "$KUBE_BIN/kube-apiserver" "$KUBE_BIN/kube-controller-manager"; do
    [[ -x "$b" ]] || die "$b is missing: run testbed/build.sh first"
  done
  gen_pki
  local ep pp ap cp
  free_port ep
  free_port pp
  free_port ap
  free_port cp

  rm -rf "$STATE/etcd"
  echo "$ep" >"$STATE/run/etcd.port"
  start etcd "$ETCD_BIN/etcd" "$ETCD_BIN/etcd" --name=stackpilot --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ep" --advertise-client-urls="http://127.0.0.1:$ep" \
    --listen-peer-urls="http://127.0.0.1:$pp" --initial-advertise-peer-urls="http://127.0.0.1:$pp" \
    --initial-cluster="stackpilot=http://127.0.0.1:$pp" --initial-cluster-state=new \
    --unsafe-no-fsync --log-level=warn
  wait_for etcd "health on port $ep" etcd_healthy

  mkdir -p "$STATE/kube-apiserver"
  echo "$ap" >"$STATE/run/kube-apiserver.port"
  start kube-apiserver "$KUBE_BIN/kube-apiserver" "$KUBE_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ep" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$ap" \
    --cert-dir="$STATE/kube-apiserver" \
    --tls-cert-file="$PKI/serving.crt" --tls-private-key-file="$PKI/serving.key" \
    --client-ca-file="$PKI/client-ca.crt" \
    --service-account-issuer="https://127.0.0.1:$ap/" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true \
    --endpoint-reconciler-type=none
  write_kubeconfig "$ap"
  wait_for kube-apiserver "/readyz ok and namespace default" apiserver_ready

  mkdir -p "$STATE/kube-controller-manager"
  echo "$cp" >"$STATE/run/kube-controller-manager.port"
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/kubeconfig" \
    --controllers=garbage-collector-controller,namespace-controller \
    --use-service-account-credentials=false --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$cp" --cert-dir="$STATE/kube-controller-manager"
  wait_for kube-controller-manager "/healthz ok on port $cp" kcm_healthy
  log "kube up: https://127.0.0.1:$ap ($KUBE_VERSION)"
}

# ---------------------------------------------------------------- AWS emulators
localstack_healthy() {
  curl -sf --max-time 3 "http://127.0.0.1:$(port_of localstack)/_localstack/health" |
    grep -q '"cloudformation": *"\(available\|running\)"'
}
moto_healthy() { curl -sf --max-time 3 -o /dev/null "http://127.0.0.1:$(port_of moto)/moto-api/"; }

up_localstack() { # <port to use if it has to start>
  if running_pid localstack >/dev/null && localstack_healthy; then
    log "localstack already up: http://127.0.0.1:$(port_of localstack)"; return 0
  fi
  stop_components localstack
  [[ -f "$LOCALSTACK_VENV/.stackpilot-key" ]] || die "$LOCALSTACK_VENV is missing: run testbed/build.sh first"
  local p="$1" d="$STATE/localstack"
  rm -rf "$d"
  mkdir -p "$d"/{fs,tmp,cache}
  echo "$p" >"$STATE/run/localstack.port"
  # Not in Docker; no DNS server (it wants port 53); queue URLs and hostnames point at the
  # gateway itself instead of *.localhost.localstack.cloud, which does not resolve offline.
  start localstack "localstack.runtime.main" env \
    OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$p" LOCALSTACK_HOST="127.0.0.1:$p" \
    SERVICES="${STACKPILOT_LOCALSTACK_SERVICES:-cloudformation,s3,sqs,sns,sts,iam,ssm}" \
    DNS_ADDRESS=0 SQS_ENDPOINT_STRATEGY=path SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
    FILESYSTEM_ROOT="$d/fs" TMPDIR="$d/tmp" XDG_CACHE_HOME="$d/cache" \
    "$LOCALSTACK_VENV/bin/python" -m localstack.runtime.main
  wait_for localstack "/_localstack/health on port $p" localstack_healthy
  log "localstack up: http://127.0.0.1:$p ($LOCALSTACK_VERSION)"
}

up_moto() { # <port to use if it has to start>
  if running_pid moto >/dev/null && moto_healthy; then
    log "moto already up: http://127.0.0.1:$(port_of moto)"; return 0
  fi
  stop_components moto
  [[ -f "$MOTO_VENV/.stackpilot-key" ]] || die "$MOTO_VENV is missing: run testbed/build.sh first"
  local p="$1"
  echo "$p" >"$STATE/run/moto.port"
  start moto "moto_server" "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$p"
  wait_for moto "an answer on port $p" moto_healthy
  log "moto up: http://127.0.0.1:$p ($MOTO_VERSION)"
}

# ---------------------------------------------------------------- main
if ((want_kube)); then up_kube; fi
if ((want_aws)); then
  # Both are Python and start in a few seconds; start them side by side.
  ls_port='' moto_port=''
  # Ports are picked here so that the two background starts cannot pick the same one.
  free_port ls_port
  free_port moto_port
  up_localstack "$ls_port" &
  ls_pid=$!
  up_moto "$moto_port" &
  moto_pid=$!
  rc=0
  wait "$ls_pid" || rc=1
  wait "$moto_pid" || rc=1
  if ((rc != 0)); then started+=(localstack moto); exit 1; fi
fi

# The env file describes whatever is running now (also parts from an earlier run).
{
  echo "# Written by testbed/up.sh; source it."
  echo "export STACKPILOT_TESTBED_DIR='$STATE'"
  if running_pid kube-apiserver >/dev/null; then echo "export KUBECONFIG='$STATE/kubeconfig'"; fi
  if running_pid localstack >/dev/null; then
    echo "export STACKPILOT_TEST_AWS_ENDPOINT='http://127.0.0.1:$(port_of localstack)'"
  fi
  if running_pid moto >/dev/null; then
    echo "export STACKPILOT_TEST_MOTO_ENDPOINT='http://127.0.0.1:$(port_of moto)'"
  fi
  echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1"
  echo "export AWS_EC2_METADATA_DISABLED=true"
} >"$STATE/env.tmp"
mv "$STATE/env.tmp" "$STATE/env"
started=()
log "testbed up in $((SECONDS - t_start)) s; source $STATE/env"
