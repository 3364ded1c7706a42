#!/usr/bin/env bash
# Start the testbed on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager (garbage
# collector, namespace, job, ttl-after-finished, serviceaccount controllers), kube-scheduler,
# KWOK with one fake node, a Git server and Flux (source- and kustomize-controller),
# LocalStack and moto_server. Binaries come from build.sh.
# State (certs, data, logs, pid files, kubeconfig, env) goes to $STACKPILOT_TESTBED_DIR
# (default /tmp/stackpilot-testbed). Components already up and healthy are left alone.
# Usage: up.sh [--no-aws | --only-aws] [--no-gitops]   then: source "$STACKPILOT_TESTBED_DIR/env"
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_kube=1 want_aws=1 want_gitops=1
for a in "$@"; do
  case "$a" in
    --no-aws) want_aws=0 ;;
    --only-aws) want_kube=0 ;;
    --no-gitops) want_gitops=0 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
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
    # Asked twice: a process in the middle of exec (env -> the binary)
    # shows an empty command line for a moment.
    if ! running_pid "$name" >/dev/null && ! { sleep 0.5 && running_pid "$name" >/dev/null; }; then
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
  kube_fresh=1 # what talks to the API server must be restarted with it
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
    --controllers=garbage-collector-controller,namespace-controller,job-controller,ttl-after-finished-controller,serviceaccount-controller \
    --use-service-account-credentials=false --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$cp" --cert-dir="$STATE/kube-controller-manager"
  wait_for kube-controller-manager "/healthz ok on port $cp" kcm_healthy
  log "kube up: https://127.0.0.1:$ap ($KUBE_VERSION)"
}

kubectl_tb() { kubectl --kubeconfig="$STATE/kubeconfig" "$@"; }

# ---------------------------------------------------------------- pods: kube-scheduler + KWOK
KWOK_NODE=kwok-node-0
scheduler_healthy() { [[ "$(curl -sfk --max-time 3 "https://127.0.0.1:$(port_of kube-scheduler)/healthz")" == ok ]]; }
# KWOK serves nothing here (no --server-address); its work shows as the node's Ready condition.
kwok_node_ready() {
  [[ "$(kubectl_tb get node "$KWOK_NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
pods_healthy() {
  running_pid kube-scheduler >/dev/null && running_pid kwok >/dev/null && scheduler_healthy && kwok_node_ready
}

up_pods() {
  if ((!kube_fresh)) && pods_healthy; then log "kube-scheduler and kwok already up (node $KWOK_NODE)"; return 0; fi
  stop_components "${POD_COMPONENTS[@]}"
  local b sp
  for b in "$KUBE_SCHEDULER_BIN/kube-scheduler" "$KWOK_BIN/kwok"; do
    [[ -x "$b" ]] || die "$b is missing: run testbed/build.sh first"
  done
  command -v kubectl >/dev/null || die "kubectl is needed to register the KWOK node"
  free_port sp
  mkdir -p "$STATE/kube-scheduler"
  echo "$sp" >"$STATE/run/kube-scheduler.port"
  start kube-scheduler "$KUBE_SCHEDULER_BIN/kube-scheduler" "$KUBE_SCHEDULER_BIN/kube-scheduler" \
    --kubeconfig="$STATE/kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$sp" --cert-dir="$STATE/kube-scheduler"
  # A node KWOK manages (selected by annotation). No taint, so Pods need no toleration.
  kubectl_tb apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $KWOK_NODE
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: $KWOK_NODE, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
EOF
  # Pod IPs from a range apart from the service range (KWOK's default, 10.0.0.0/24, is that range).
  start kwok "$KWOK_BIN/kwok" "$KWOK_BIN/kwok" \
    --kubeconfig="$STATE/kubeconfig" --config="$TESTBED_ROOT/kwok/stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.0/16 --node-lease-duration-seconds=40
  wait_for kube-scheduler "/healthz ok on port $sp" scheduler_healthy
  wait_for kwok "node $KWOK_NODE Ready" kwok_node_ready
  # The API server taints every new node not-ready (admission TaintNodesByCondition); the node
  # lifecycle controller would lift it, but it is not run (it would evict Pods whenever KWOK
  # lags). Lift it here; nothing adds it again.
  kubectl_tb taint node "$KWOK_NODE" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
  [[ -z "$(kubectl_tb get node "$KWOK_NODE" -o 'jsonpath={.spec.taints}')" ]] || die "node $KWOK_NODE still has taints"
  log "kube-scheduler and kwok up: node $KWOK_NODE ($KWOK_VERSION)"
}

# ---------------------------------------------------------------- GitOps: gitserver + Flux
gitserver_healthy() { [[ "$(curl -sf --max-time 3 "http://127.0.0.1:$(port_of gitserver)/healthz")" == ok ]]; }
flux_ready() { # <name>: controller-runtime's /readyz on the recorded health port
  [[ "$(curl -sf --max-time 3 "http://127.0.0.1:$(cat "$STATE/run/$1.health-port" 2>/dev/null)/readyz")" == ok ]]
}
flux_healthy() {
  local c
  for c in "${FLUX_COMPONENTS[@]}"; do running_pid "$c" >/dev/null && flux_ready "$c" || return 1; done
}

up_gitserver() {
  if running_pid gitserver >/dev/null && gitserver_healthy; then
    log "gitserver already up: http://127.0.0.1:$(port_of gitserver)"; return 0
  fi
  stop_components gitserver
  [[ -x "$GITSERVER_BIN/gitserver" ]] || die "$GITSERVER_BIN/gitserver is missing: run testbed/build.sh first"
  local gp # not "p": free_port's own local would shadow it
  free_port gp
  echo "$gp" >"$STATE/run/gitserver.port"
  # Bare repos in $STATE/git survive a restart of the server (not down.sh without --keep).
  start gitserver "$GITSERVER_BIN/gitserver" "$GITSERVER_BIN/gitserver" -addr="127.0.0.1:$gp" -root="$STATE/git"
  wait_for gitserver "/healthz on port $gp" gitserver_healthy
  log "gitserver up: http://127.0.0.1:$gp (repos in $STATE/git)"
}

up_flux() {
  if ((!kube_fresh)) && flux_healthy; then log "flux already up"; return 0; fi
  stop_components "${FLUX_COMPONENTS[@]}"
  local f sp sh kh
  for f in "$FLUX_SOURCE_DIR/bin/source-controller" "$FLUX_KUSTOMIZE_DIR/bin/kustomize-controller" \
    "$FLUX_SOURCE_DIR/crds" "$FLUX_KUSTOMIZE_DIR/crds"; do
    [[ -e "$f" ]] || die "$f is missing: run testbed/build.sh first"
  done
  command -v kubectl >/dev/null || die "kubectl is needed to install the Flux CRDs"
  kubectl_tb apply --server-side --force-conflicts --field-manager=stackpilot-testbed \
    -f "$FLUX_SOURCE_DIR/crds" -f "$FLUX_KUSTOMIZE_DIR/crds" >/dev/null
  kubectl_tb wait --for=condition=Established --timeout=60s \
    -f "$FLUX_SOURCE_DIR/crds" -f "$FLUX_KUSTOMIZE_DIR/crds" >/dev/null
  free_port sp
  free_port sh
  free_port kh
  mkdir -p "$STATE/flux-artifacts"
  echo "$sp" >"$STATE/run/source-controller.port"
  echo "$sh" >"$STATE/run/source-controller.health-port"
  echo "$kh" >"$STATE/run/kustomize-controller.health-port"
  # Metrics off (0), no events receiver. All namespaces and no leader election are the defaults,
  # given anyway so the command line says so. The artifact server listens on 127.0.0.1, and the
  # artifact URLs in status name that address.
  start source-controller "$FLUX_SOURCE_DIR/bin/source-controller" env KUBECONFIG="$STATE/kubeconfig" \
    "$FLUX_SOURCE_DIR/bin/source-controller" --metrics-addr=0 --health-addr="127.0.0.1:$sh" \
    --enable-leader-election=false --watch-all-namespaces=true --log-encoding=console \
    --storage-path="$STATE/flux-artifacts" --storage-addr="127.0.0.1:$sp" --storage-adv-addr="127.0.0.1:$sp"
  start kustomize-controller "$FLUX_KUSTOMIZE_DIR/bin/kustomize-controller" env KUBECONFIG="$STATE/kubeconfig" \
    "$FLUX_KUSTOMIZE_DIR/bin/kustomize-controller" --metrics-addr=0 --health-addr="127.0.0.1:$kh" \
    --enable-leader-election=false --watch-all-namespaces=true --log-encoding=console
  wait_for source-controller "/readyz on port $sh" flux_ready source-controller
  wait_for kustomize-controller "/readyz on port $kh" flux_ready kustomize-controller
  log "flux up: source-controller $FLUX_SOURCE_VERSION (artifacts http://127.0.0.1:$sp), kustomize-controller $FLUX_KUSTOMIZE_VERSION"
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
    SERVICES="${STACKPILOT_LOCALSTACK_SERVICES:-cloudformation,s3,sqs,sns,sts,iam,ssm,cloudwatch}" \
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
kube_fresh=0
if ((want_kube)); then
  up_kube
  up_pods
  if ((want_gitops)); then
    up_gitserver
    up_flux
  fi
fi
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
  if running_pid kwok >/dev/null && running_pid kube-scheduler >/dev/null; then
    echo "export STACKPILOT_TEST_KWOK_NODE='$KWOK_NODE'"
  fi
  if running_pid gitserver >/dev/null; then
    echo "export STACKPILOT_TEST_GIT_URL='http://127.0.0.1:$(port_of gitserver)'"
  fi
  if running_pid source-controller >/dev/null && running_pid kustomize-controller >/dev/null; then
    echo "export STACKPILOT_TEST_FLUX_STORAGE_URL='http://127.0.0.1:$(port_of source-controller)'"
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
