"""Offline checks of the Helm chart helm/membersync (DESIGN 10).

helm lint --strict and helm template with the default values and with
tests/deploy/values-all-on.yaml (every optional part on); every rendered
manifest validated against the Kubernetes OpenAPI schemas bundled in
kubernetes-validate (strict: unknown fields fail), for the oldest Kubernetes
the chart supports and the newest the package knows; then the structure the
design asks for, and that a typo in values fails the values schema.

Needs helm and kubernetes-validate from scripts/setup-helm.sh, found under
$MEMBERSYNC_CACHE (default ~/.cache/membersync).  YAML is parsed by the
venv's Python (PyYAML comes with kubernetes-validate); this file uses only the
standard library.
"""

import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib  # noqa: E402
from deploylib import BIN_DIR, CHART, HELM, SOURCE_DIR, VENV_PYTHON, run  # noqa: E402

ALL_ON = os.path.join(SOURCE_DIR, "tests", "deploy", "values-all-on.yaml")
RELEASE = "ms"
FULL = "ms-membersync"
CONFIG_PATH = "/etc/membersync/membersync.conf"
# Kinds whose schemas are CRDs, not in kubernetes-validate: skipped by name.
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}
# Oldest supported (Chart.yaml kubeVersion) and newest known to the package.
K8S_VERSIONS = ["1.27.0", "latest"]

# component -> (args after --config FILE, values key)
ROLES = {
    "ratelimiter": (["ratelimiter"], "ratelimiter"),
    "connector-cornerstone": (["connector", "--system", "cornerstone"], "connectorCornerstone"),
    "connector-consio": (["connector", "--system", "consio"], "connectorConsio"),
    "projector": (["projector"], "projector"),
    "relay": (["relay"], "relay"),
    "api": (["api"], "api"),
}
# Consumer roles -> (group suffix, topic config key); the code builds the group
# as <kafka.group_prefix>-<suffix>.
CONSUMERS = {
    "ratelimiter": ("ratelimiter", "sync_requests"),
    "projector": ("projector", "sync_events"),
    "connector-cornerstone": ("connector-cornerstone", "sync_jobs_cornerstone"),
    "connector-consio": ("connector-consio", "sync_jobs_consio"),
}

RENDERS = {}  # "default" / "all-on" -> list of manifests (dicts)


# ---- helpers ----

def venv_python(code, stdin):
    p = run([VENV_PYTHON, "-c", code], input=stdin)
    return json.loads(p.stdout)


YAML_TO_JSON = """
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
json.dump(docs, sys.stdout)
"""

VALIDATE = """
import json, sys
import kubernetes_validate as kv
from kubernetes_validate import utils
req = json.load(sys.stdin)
out = []
for version in req["versions"]:
    v = utils.latest_version() if version == "latest" else version
    for doc in req["docs"]:
        name = "%s/%s" % (doc.get("kind"), doc.get("metadata", {}).get("name"))
        try:
            kv.validate(doc, v, strict=True)
            out.append([v, name, None])
        except kv.ValidationError as e:
            out.append([v, name, "%s at %s" % (e.message, "/".join(map(str, e.path)))])
        except Exception as e:
            out.append([v, name, "%s: %s" % (type(e).__name__, e)])
json.dump(out, sys.stdout)
"""


def helm_template(*args, check=True):
    return run([HELM, "template", RELEASE, CHART, "--namespace", "membersync"] + list(args),
               check=check)


def render(which):
    if which not in RENDERS:
        args = ["-f", ALL_ON] if which == "all-on" else []
        RENDERS[which] = venv_python(YAML_TO_JSON, helm_template(*args).stdout)
    return RENDERS[which]


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def named(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, "want one %s %s, found %d" % (kind, name, len(found))
    return found[0]


def deployment(docs, component):
    return named(docs, "Deployment", "%s-%s" % (FULL, component))


def pod_specs(docs):
    """(label, pod spec) of every pod the chart can start."""
    out = []
    for d in docs:
        k = d["kind"]
        if k == "Deployment" or k == "Job":
            out.append(("%s/%s" % (k, d["metadata"]["name"]), d["spec"]["template"]["spec"]))
        elif k == "CronJob":
            out.append(("CronJob/" + d["metadata"]["name"],
                        d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif k == "Pod":
            out.append(("Pod/" + d["metadata"]["name"], d["spec"]))
    return out


def parse_libconfig(text):
    """The subset of libconfig membersync uses: groups of scalar settings.
    Returns {section: {key: value}}; raises AssertionError on anything else."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_-]*|-?[0-9][0-9.eE+-]*|[={};:,]|#[^\n]*|//[^\n]*|\S',
                        text)
    tokens = [t for t in tokens if not t.startswith("#") and not t.startswith("//")]
    pos = 0

    def take(want=None):
        nonlocal pos
        assert pos < len(tokens), "libconfig: unexpected end"
        t = tokens[pos]
        pos += 1
        assert want is None or t == want, "libconfig: want %r, got %r" % (want, t)
        return t

    def scalar(t):
        if t.startswith('"'):
            return json.loads(t)  # libconfig escapes are a subset of JSON's
        if t in ("true", "false"):
            return t == "true"
        if re.fullmatch(r"-?[0-9]+", t):
            return int(t)
        if re.fullmatch(r"-?[0-9.eE+-]+", t):
            return float(t)
        raise AssertionError("libconfig: bad value %r" % t)

    out = {}
    while pos < len(tokens):
        section = take()
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", section), section
        assert take() in ("=", ":")
        take("{")
        group = {}
        while tokens[pos] != "}":
            key = take()
            assert take() in ("=", ":")
            val = take()
            group[key] = scalar(val)
            take(";")
        take("}")
        if pos < len(tokens) and tokens[pos] == ";":
            take(";")
        assert section not in out, "libconfig: section %s twice" % section
        out[section] = group
    return out


def config_of(docs, name="%s-config" % FULL):
    return parse_libconfig(named(docs, "ConfigMap", name)["data"]["membersync.conf"])


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def setup():
    deploylib.need_tools()
    assert os.path.isdir(CHART), "no chart at %s" % CHART


# ---- lint and schema validation ----

def test_lint_strict_default_values():
    p = run([HELM, "lint", "--strict", CHART])
    assert "0 chart(s) failed" in p.stdout, p.stdout


def test_lint_strict_all_on_values():
    p = run([HELM, "lint", "--strict", CHART, "-f", ALL_ON])
    assert "0 chart(s) failed" in p.stdout, p.stdout


def test_rendered_manifests_validate_offline():
    for which in ("default", "all-on"):
        docs = render(which)
        skipped = sorted({d["kind"] for d in docs if d["kind"] in CRD_KINDS})
        todo = [d for d in docs if d["kind"] not in CRD_KINDS]
        if which == "all-on":
            assert skipped == sorted(CRD_KINDS), "all-on renders CRD kinds %s" % skipped
        else:
            assert skipped == [], "default values render CRDs: %s" % skipped
        res = venv_python(VALIDATE, json.dumps({"versions": K8S_VERSIONS, "docs": todo}))
        assert len(res) == len(todo) * len(K8S_VERSIONS)
        bad = ["%s (k8s %s): %s" % (n, v, e) for v, n, e in res if e]
        assert not bad, "%s values:\n  " % which + "\n  ".join(bad)


def test_validator_rejects_a_bad_manifest():
    # The validation above means something only if a broken manifest fails.
    d = json.loads(json.dumps(deployment(render("default"), "projector")))
    d["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    d["spec"]["replicas"] = "two"
    res = venv_python(VALIDATE, json.dumps({"versions": ["latest"], "docs": [d]}))
    assert res[0][2], "kubernetes-validate accepted a broken Deployment"


def test_values_typo_fails_schema():
    cases = [
        ["--set", "roles.ratelimiter.replica=3"],           # unknown role key
        ["--set", "config.kafka.bootstrap_server=k:9092"],  # unknown config key
        ["--set", "imge.tag=1"],                            # unknown top-level key
        ["--set", "roles.relay.keda.enabled=true"],         # relay is no consumer
        ["--set", "roles.api.replicas=two"],                # wrong type
        ["--set", "config.log.level=verbose"],              # not in the enum
        ["--set", "securityContext.runAsUser=0"],           # root
    ]
    for args in cases:
        p = helm_template(*args, check=False)
        assert p.returncode != 0, "helm template %s was accepted" % " ".join(args)
        assert "schema" in p.stderr, "helm template %s failed, but not on the schema: %s" % (
            " ".join(args), p.stderr[-500:])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write("config:\n  postgres:\n    dsn: x\n    pasword: y\n")
        f.flush()
        p = helm_template("-f", f.name, check=False)
        assert p.returncode != 0 and "pasword" in p.stderr, p.stderr[-500:]
        p = run([HELM, "lint", "--strict", CHART, "-f", f.name], check=False)
        assert p.returncode != 0, "helm lint accepted a typo"


# ---- structure ----

def test_expected_objects_default_values():
    docs = render("default")
    kinds = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    want = {"Deployment": 6, "PodDisruptionBudget": 6, "CronJob": 1, "Job": 1, "ConfigMap": 2,
            "Service": 2, "ServiceAccount": 1, "Pod": 1}
    assert kinds == want, "kinds %s, want %s" % (kinds, want)
    assert not of_kind(docs, "Secret"), "the chart must not create Secrets"


def test_expected_objects_all_on():
    docs = render("all-on")
    assert len(of_kind(docs, "ScaledObject")) == 4
    assert len(of_kind(docs, "ServiceMonitor")) == 1
    assert len(of_kind(docs, "NetworkPolicy")) == 1
    assert not of_kind(docs, "Secret"), "the chart must not create Secrets"


def test_one_deployment_per_role_with_role_args():
    for which in ("default", "all-on"):
        docs = render(which)
        images = set()
        for comp, (args, _) in ROLES.items():
            d = deployment(docs, comp)
            c = d["spec"]["template"]["spec"]["containers"]
            assert len(c) == 1, "%s: %d containers" % (comp, len(c))
            assert c[0]["args"] == ["--config", CONFIG_PATH] + args, (comp, c[0]["args"])
            images.add(c[0]["image"])
            assert d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert len(images) == 1, "roles use different images: %s" % images
    assert images == {"registry.example.com/membersync:1.2.3"}, images


def test_relay_is_single_replica_and_recreated():
    d = deployment(render("default"), "relay")
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"]["type"] == "Recreate"
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = f.read()
    roles = values[values.index("\nroles:"):]
    relay = roles[roles.index("\n  relay:"):roles.index("\n  api:")]
    assert "standby" in relay, "values.yaml does not say relay replicas beyond 1 are standbys"


def test_every_pod_runs_non_root_read_only():
    for which in ("default", "all-on"):
        for label, spec in pod_specs(render(which)):
            psc = spec.get("securityContext", {})
            assert psc.get("runAsNonRoot") is True, "%s: pod runAsNonRoot" % label
            assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", label
            assert spec.get("automountServiceAccountToken") is False, label
            for c in spec["containers"]:
                sc = c.get("securityContext", {})
                where = "%s/%s" % (label, c["name"])
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
                assert (sc.get("runAsUser") or psc.get("runAsUser")) not in (None, 0), where
                assert "limits" in c.get("resources", {}), "%s: no resource limits" % where
                if c["name"] != "curl":
                    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                    assert "/tmp" in mounts, "%s: no writable /tmp" % where


def test_probes_on_health_port():
    for which, health, api in (("default", 9090, 8080), ("all-on", 9464, 8443)):
        docs = render(which)
        for comp in ROLES:
            c = deployment(docs, comp)["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"),
                                ("startupProbe", "/livez")):
                assert probe in c, "%s %s: no %s" % (which, comp, probe)
                get = c[probe]["httpGet"]
                assert get["path"] == path, (comp, probe, get)
                port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
                want = api if comp == "api" else health
                assert port == want, "%s %s %s on port %s, want %s" % (
                    which, comp, probe, port, want)


def test_pdb_per_role_selects_its_pods():
    for which in ("default", "all-on"):
        docs = render(which)
        pdbs = {d["metadata"]["name"]: d for d in of_kind(docs, "PodDisruptionBudget")}
        for comp in ROLES:
            pdb = pdbs.get("%s-%s" % (FULL, comp))
            assert pdb, "%s: no PDB for %s" % (which, comp)
            sel = pdb["spec"]["selector"]["matchLabels"]
            labels = deployment(docs, comp)["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items(), (comp, sel)
            assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), comp
    assert pdbs["%s-ratelimiter" % FULL]["spec"]["minAvailable"] == 1
    assert pdbs["%s-connector-cornerstone" % FULL]["spec"]["maxUnavailable"] == "50%"


def test_labels_and_selectors():
    for which in ("default", "all-on"):
        docs = render(which)
        for d in docs:
            labels = d["metadata"].get("labels", {})
            what = "%s/%s" % (d["kind"], d["metadata"]["name"])
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                      "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                      "app.kubernetes.io/part-of", "helm.sh/chart"):
                assert k in labels, "%s: no label %s" % (what, k)
            assert labels["app.kubernetes.io/instance"] == RELEASE, what
        for comp in ROLES:
            d = deployment(docs, comp)
            sel = d["spec"]["selector"]["matchLabels"]
            assert sel.get("app.kubernetes.io/component") == comp, sel
            assert "app.kubernetes.io/version" not in sel, "version in a selector breaks upgrades"
            assert sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        # Selectors of different roles must not overlap.
        sels = [tuple(sorted(deployment(docs, c)["spec"]["selector"]["matchLabels"].items()))
                for c in ROLES]
        assert len(set(sels)) == len(sels)


def test_configmap_is_the_libconfig_file():
    with open(os.path.join(SOURCE_DIR, "config", "membersync.conf")) as f:
        repo = parse_libconfig(f.read())
    for which in ("default", "all-on"):
        docs = render(which)
        for name in ("%s-config" % FULL, "%s-migrate-config" % FULL):
            cfg = config_of(docs, name)
            # Same sections and keys as the repository's config file: the
            # binary refuses unknown keys, and a missing one would mean the
            # chart silently fell behind.
            assert {s: sorted(k) for s, k in cfg.items()} == \
                {s: sorted(k) for s, k in repo.items()}, "%s %s keys differ from config/membersync.conf" % (which, name)
            for s, keys in repo.items():
                for k, v in keys.items():
                    assert type(cfg[s][k]) is type(v), "%s.%s: %r vs %r" % (s, k, cfg[s][k], v)
    d = config_of(render("default"))
    assert d["kafka"]["bootstrap_servers"] == "kafka:9092"
    assert d["postgres"]["dsn"] == "postgresql://membersync@postgres:5432/membersync"
    assert d["topics"] == repo["topics"], d["topics"]
    assert d["health"]["port"] == 9090 and d["api"]["listen"] == "0.0.0.0:8080"
    a = config_of(render("all-on"))
    assert a["kafka"]["bootstrap_servers"] == "kafka-0.kafka:9093,kafka-1.kafka:9093"
    assert a["postgres"]["dsn"].endswith("sslmode=verify-full")
    assert a["kafka"]["group_prefix"] == "ms-prod" and a["health"]["port"] == 9464
    # The chart points the JWT keys at the mounted Secret's files.
    assert a["api"]["jwt_hs256_secret_file"] == "/var/run/secrets/membersync/jwt/hs256"
    assert a["api"]["jwt_rs256_public_key_file"] == "/var/run/secrets/membersync/jwt/rs256.pub"


def test_configmap_loads_in_membersync():
    # The real parser (ms_conf, strict about keys and types) on the rendered
    # file: an unknown command is reported only after the config loaded.
    binary = os.path.join(BIN_DIR, "membersync")
    assert os.access(binary, os.X_OK), "%s not built (MS_BIN_DIR)" % binary
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERSYNC_")}
    for which in ("default", "all-on"):
        text = named(render(which), "ConfigMap", "%s-config" % FULL)["data"]["membersync.conf"]
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(text)
            f.flush()
            p = run([binary, "--config", f.name, "no-such-command"], check=False, env=env)
        assert 'unknown command "no-such-command"' in p.stderr, \
            "%s: membersync rejected the rendered config: %s" % (which, p.stderr[-500:])


def test_cronjob_runs_nightly_schedule():
    c = named(render("default"), "CronJob", "%s-schedule" % FULL)
    assert c["spec"]["schedule"] == "0 2 * * *"
    assert c["spec"]["concurrencyPolicy"] == "Forbid"
    pod = c["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["--config", CONFIG_PATH, "schedule"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    a = named(render("all-on"), "CronJob", "%s-schedule" % FULL)
    assert a["spec"]["schedule"] == "30 1 * * *" and a["spec"]["timeZone"] == "Europe/Oslo"
    p = helm_template("--set", "schedule.enabled=false")
    assert "kind: CronJob" not in p.stdout


def test_migration_hook_job():
    for which in ("default", "all-on"):
        docs = render(which)
        job = named(docs, "Job", "%s-migrate" % FULL)
        ann = job["metadata"]["annotations"]
        hooks = set(ann["helm.sh/hook"].split(","))
        assert hooks == {"pre-install", "pre-upgrade"}, hooks
        assert "helm.sh/hook-weight" in ann and "helm.sh/hook-delete-policy" in ann
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == ["--config", CONFIG_PATH, "migrate"]
        assert pod["restartPolicy"] == "Never"
        # Its config must exist before it runs: a hook ConfigMap, created first.
        cm_name = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
        assert cm_name == ["%s-migrate-config" % FULL], cm_name
        cm = named(docs, "ConfigMap", cm_name[0])
        cm_ann = cm["metadata"]["annotations"]
        assert set(cm_ann["helm.sh/hook"].split(",")) == hooks
        assert int(cm_ann["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
        assert config_of(docs, cm_name[0]) == config_of(docs)
        # No dependency on objects a fresh install has not created yet.
        if which == "default":
            assert "serviceAccountName" not in pod, "hook uses the chart's ServiceAccount"


def test_secrets_only_by_reference():
    docs = render("all-on")
    for comp in ROLES:
        c = deployment(docs, comp)["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "membersync-postgres", "key": "password"}, comp
        assert env["MEMBERSYNC_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"]["key"] == "dsn"
        member = {"CORNERSTONE_ORG42_API_KEY", "CONSIO_ORG7_CLIENT_SECRET"}
        vols = deployment(docs, comp)["spec"]["template"]["spec"]["volumes"]
        secret_vols = {v["secret"]["secretName"] for v in vols if "secret" in v}
        if comp.startswith("connector-"):
            assert member <= env.keys(), "%s lacks member-system credentials" % comp
            assert "membersync-consio-clients" in secret_vols
        else:
            assert not member & env.keys(), "%s gets member-system credentials" % comp
            assert "membersync-consio-clients" not in secret_vols
        assert ("membersync-jwt" in secret_vols) == (comp == "api"), comp
        for e in env.values():
            assert "value" not in e or not re.search(r"pass|secret|key", e["name"], re.I), e
    # The migration and schedule pods reach PostgreSQL too.
    job = named(docs, "Job", "%s-migrate" % FULL)["spec"]["template"]["spec"]["containers"][0]
    assert "PGPASSWORD" in env_of(job)


def test_api_service_and_metrics():
    docs = render("default")
    svc = named(docs, "Service", "%s-api" % FULL)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["targetPort"] == "http" and ports["http"]["port"] == 80
    assert "metrics" in ports
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    m = named(docs, "Service", "%s-metrics" % FULL)
    assert m["spec"]["clusterIP"] == "None"
    assert m["spec"]["ports"][0]["targetPort"] == "metrics"
    all_on = render("all-on")
    sm = of_kind(all_on, "ServiceMonitor")[0]
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for s in of_kind(all_on, "Service"):
        sel = sm["spec"]["selector"]["matchLabels"]
        assert sel.items() <= s["metadata"]["labels"].items(), s["metadata"]["name"]


def test_keda_scaled_objects_on_consumer_lag():
    docs = render("all-on")
    sos = {d["spec"]["scaleTargetRef"]["name"]: d for d in of_kind(docs, "ScaledObject")}
    assert set(sos) == {"%s-%s" % (FULL, c) for c in CONSUMERS}, sorted(sos)
    cfg = config_of(docs)
    for comp, (group, topic_key) in CONSUMERS.items():
        so = sos["%s-%s" % (FULL, comp)]
        trig = so["spec"]["triggers"]
        assert len(trig) == 1 and trig[0]["type"] == "kafka"
        md = trig[0]["metadata"]
        assert md["consumerGroup"] == "ms-prod-%s" % group, md
        assert md["topic"] == cfg["topics"][topic_key], md
        assert md["bootstrapServers"] == cfg["kafka"]["bootstrap_servers"]
        assert isinstance(md["lagThreshold"], str), "KEDA metadata values are strings"
        assert so["spec"]["maxReplicaCount"] <= 12, "more replicas than partitions"
        # KEDA owns the replica count.
        assert "replicas" not in deployment(docs, comp)["spec"], comp
    assert "replicas" in deployment(docs, "relay")["spec"]
    assert "replicas" in deployment(docs, "api")["spec"]


def test_network_policy_when_enabled():
    np = of_kind(render("all-on"), "NetworkPolicy")[0]
    sel = np["spec"]["podSelector"]["matchLabels"]
    assert sel["app.kubernetes.io/instance"] == RELEASE
    ports = [p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]]
    assert "http" in ports and "metrics" in ports


def test_helm_test_pod_curls_api_readyz():
    pods = of_kind(render("default"), "Pod")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    cmd = pod["spec"]["containers"][0].get("command", []) + \
        pod["spec"]["containers"][0].get("args", [])
    assert cmd[0] == "curl", cmd
    assert "http://%s-api:80/readyz" % FULL in cmd, cmd
    assert "--fail" in cmd


def test_install_dry_run_renders_notes():
    # Client-side dry run: no cluster; shows NOTES.txt renders.
    p = run([HELM, "install", RELEASE, CHART, "--dry-run=client", "-f", ALL_ON])
    notes = p.stdout[p.stdout.index("NOTES:"):]
    assert "relay: 2 replica(s)" in notes and "standby" in notes, notes
    assert "ratelimiter: 1..12 replicas (KEDA)" in notes, notes
    assert "helm test %s" % RELEASE in notes, notes


if __name__ == "__main__":
    deploylib.main(dict(globals()), setup=setup)
