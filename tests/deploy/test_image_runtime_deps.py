"""The container image's runtime stage, checked without Docker.

The Dockerfile's runtime stage installs a hand-written list of Debian
packages.  A library added to the build (a new -dev package) without its
runtime package would give an image whose binary does not start.  This maps
what the built binaries link (readelf NEEDED entries, resolved by ldd) to
Debian packages with dpkg -S, on this Debian 12 machine (the image's base),
and checks them against that list.  It also checks that the image does not
run as root, and the rest of the stage layout the Helm chart relies on.

Env: MS_BIN_DIR (CMake build dir holding membersync and membersync-sim),
MS_SOURCE_DIR.
"""

import os
import re
import shlex
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib  # noqa: E402
from deploylib import BIN_DIR, SOURCE_DIR, run  # noqa: E402

DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")
BINARIES = ["membersync", "membersync-sim"]

# Packages debian:12-slim has already (Priority: required / essential), so
# the runtime stage need not list them.  Explicit on purpose: anything else a
# binary links must come from the install line or its dependencies.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
SANITIZER_RUNTIME = re.compile(r"lib(asan|ubsan|tsan|lsan)\.so")
# The -dev packages the build stage needs (DESIGN 2 stack), each with the
# runtime package the runtime stage must then install.
DEV_TO_RUNTIME = {
    "librdkafka-dev": "librdkafka1", "libavro-dev": "libavro23",
    "libcurl4-openssl-dev": "libcurl4", "libpq-dev": "libpq5", "libconfig-dev": "libconfig9",
    "libjansson-dev": "libjansson4", "libmicrohttpd-dev": "libmicrohttpd12",
    "libjwt-dev": "libjwt0", "libutf8proc-dev": "libutf8proc2", "uuid-dev": "libuuid1",
}


# ---- Dockerfile parsing ----

def dockerfile_stages():
    """[(name, from_image, [(instruction, args)])], continuation lines joined,
    comments dropped, ARG defaults before the first FROM substituted."""
    with open(DOCKERFILE) as f:
        text = f.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    if cur:
        lines.append(cur)
    args, stages = {}, []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
            continue
        if instr == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), rest.split()[0])
            m = re.search(r"\s+AS\s+(\S+)", rest, re.I)
            stages.append((m.group(1) if m else str(len(stages)), image, []))
            continue
        assert stages, "instruction before FROM: %s" % line
        stages[-1][2].append((instr, rest))
    return stages


def apt_install_packages(instructions):
    """Package names on `apt-get install` in the RUN instructions."""
    pkgs = []
    for instr, rest in instructions:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|;", rest):
            words = shlex.split(cmd)
            if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs += [w for w in after if not w.startswith("-")]
    return pkgs


def runtime_stage():
    return dockerfile_stages()[-1]


def build_stage():
    return dockerfile_stages()[0]


# ---- shared-library -> package mapping ----

def needed_libs(binary):
    """{soname: path} of the binary's direct NEEDED libraries, and {soname: path}
    of everything ldd loads (transitively)."""
    ldd = run(["ldd", binary]).stdout
    paths = {}
    for line in ldd.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)\s+\(", line)
        if m:
            paths[m.group(1)] = m.group(2)
        else:
            m = re.match(r"\s*(/\S+)\s+\(", line)  # the dynamic loader
            if m:
                paths[os.path.basename(m.group(1))] = m.group(1)
    assert "not found" not in ldd, "unresolved libraries:\n" + ldd
    # A -DMS_SANITIZE=ON tree links the sanitizer runtimes, which the
    # image's (release) build does not.
    paths = {so: p for so, p in paths.items() if not SANITIZER_RUNTIME.match(so)}
    direct = {}
    if shutil.which("readelf"):
        dyn = run(["readelf", "-d", binary]).stdout
        for so in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn):
            if SANITIZER_RUNTIME.match(so):
                continue
            assert so in paths, "NEEDED %s not in ldd output" % so
            direct[so] = paths[so]
    else:
        direct = dict(paths)
    return direct, paths


_pkg_cache = {}


def _usr_twins(path):
    cands = [path, os.path.realpath(path)]
    for c in list(cands):
        cands.append(c[4:] if c.startswith("/usr/") else "/usr" + c)
    return cands


def packages_of(paths):
    """{path: Debian package} for library paths, in one dpkg -S call (dpkg is
    slow to start).  dpkg records either the path, its real path or its
    /usr-merged twin, so all are asked."""
    todo = [p for p in paths if p not in _pkg_cache]
    if todo:
        cands = sorted({c for p in todo for c in _usr_twins(p)})
        out = run(["dpkg", "-S"] + cands, check=False).stdout
        owner = {}
        for line in out.splitlines():
            if line.startswith("diversion"):
                continue
            # "libfoo1:amd64: /lib/x86_64-linux-gnu/libfoo.so.1"
            pkgs, _, path = line.partition(": ")
            owner[path.strip()] = pkgs.split(",")[0].strip().split(":")[0]
        for p in todo:
            hit = [owner[c] for c in _usr_twins(p) if c in owner]
            assert hit, "no Debian package owns %s" % p
            _pkg_cache[p] = hit[0]
    return {p: _pkg_cache[p] for p in paths}


_dpkg_db = None


def dpkg_db():
    """{package: (installed, [[alternatives], ...])} and {virtual: [providers]}
    of every package dpkg knows here, read once."""
    global _dpkg_db
    if _dpkg_db is None:
        out = run(["dpkg-query", "-W",
                   "-f=${Package}\t${Status}\t${Depends}, ${Pre-Depends}\t${Provides}\n"]).stdout
        db, provides = {}, {}
        for line in out.splitlines():
            name, status, deps, prov = (line.split("\t") + ["", "", ""])[:4]
            groups = []
            for group in deps.split(","):
                alts = [re.sub(r"\(.*?\)|:\w+", "", a).strip() for a in group.split("|")]
                alts = [a for a in alts if a]
                if alts:
                    groups.append(alts)
            installed = "install ok installed" in status
            db[name] = (installed, groups)
            if installed:
                for v in prov.split(","):
                    v = re.sub(r"\(.*?\)", "", v).strip()
                    if v:
                        provides.setdefault(v, []).append(name)
        _dpkg_db = (db, provides)
    return _dpkg_db


def installed_here(pkg):
    db, _ = dpkg_db()
    return pkg in db and db[pkg][0]


def depends_closure(pkgs):
    """pkgs plus their Depends/Pre-Depends, recursively, as installed here.
    Alternatives ("a | b") count as the ones installed (all when none is);
    virtual packages as their installed providers."""
    db, provides = dpkg_db()
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += provides.get(p, [])
        for alts in db.get(p, (False, []))[1]:
            installed = [a for a in alts if installed_here(a) or provides.get(a)]
            todo += installed or alts
    return seen


# ---- tests ----

def binaries():
    out = []
    for b in BINARIES:
        path = os.path.join(BIN_DIR, b)
        assert os.access(path, os.X_OK), "%s not built (MS_BIN_DIR=%s)" % (path, BIN_DIR)
        out.append(path)
    return out


def test_runtime_stage_is_debian12_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "want a multi-stage build, got %d stage(s)" % len(stages)
    assert build_stage()[1] == "debian:bookworm", "build stage FROM %s" % build_stage()[1]
    assert runtime_stage()[1] == "debian:bookworm-slim", "runtime FROM %s" % runtime_stage()[1]


def test_build_stage_installs_the_dev_packages():
    pkgs = set(apt_install_packages(build_stage()[2]))
    want = set(DEV_TO_RUNTIME) | {"cmake", "ninja-build", "build-essential", "pkg-config"}
    assert want <= pkgs, "build stage lacks %s" % sorted(want - pkgs)


def test_runtime_stage_installs_runtime_package_of_each_dev_package():
    pkgs = set(apt_install_packages(runtime_stage()[2]))
    want = set(DEV_TO_RUNTIME.values()) | {"ca-certificates"}
    assert want <= pkgs, "runtime stage lacks %s" % sorted(want - pkgs)
    dev = sorted(p for p in pkgs if p.endswith("-dev") or p in (
        "build-essential", "cmake", "gcc", "pkg-config"))
    assert not dev, "build tools in the runtime stage: %s" % dev


def test_runtime_packages_cover_direct_library_needs():
    listed = set(apt_install_packages(runtime_stage()[2]))
    assert listed, "no apt-get install line in the runtime stage"
    missing = {}
    for b in binaries():
        direct, _ = needed_libs(b)
        assert direct, "%s links no shared library?" % b
        owners = packages_of(list(direct.values()))
        for so, path in sorted(direct.items()):
            pkg = owners[path]
            if pkg not in listed and pkg not in BASE_IMAGE_PACKAGES:
                missing.setdefault(pkg, []).append("%s (%s)" % (so, os.path.basename(b)))
    assert not missing, "runtime stage's apt-get install lacks: " + "; ".join(
        "%s for %s" % (p, ", ".join(v)) for p, v in sorted(missing.items()))


def test_runtime_packages_cover_transitive_library_needs():
    # Libraries of libraries arrive through the listed packages' own
    # dependencies; check that every one does (or is in the base image).
    listed = set(apt_install_packages(runtime_stage()[2]))
    closure = depends_closure(listed) | BASE_IMAGE_PACKAGES
    missing = {}
    for b in binaries():
        _, every = needed_libs(b)
        owners = packages_of(list(every.values()))
        for so, path in sorted(every.items()):
            pkg = owners[path]
            if pkg not in closure:
                missing.setdefault(pkg, []).append(so)
    assert not missing, "libraries whose packages nothing installs: %s" % sorted(missing.items())


def test_runtime_packages_exist_in_debian12():
    # ldd-derived names exist by construction; this catches a typo in the
    # others (ca-certificates) or a package from another release.
    for pkg in apt_install_packages(runtime_stage()[2]):
        if installed_here(pkg):
            continue
        p = run(["apt-cache", "show", "--no-all-versions", pkg], check=False)
        assert p.returncode == 0 and "Package: %s" % pkg in p.stdout, \
            "%s: not a Debian 12 package here (apt-cache show failed)" % pkg


def test_runtime_runs_as_non_root_user():
    instr = runtime_stage()[2]
    users = [rest for i, rest in instr if i == "USER"]
    assert users, "runtime stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "runtime USER is %s" % users[-1]
    # Numeric, so that Kubernetes runAsNonRoot can verify it without passwd.
    assert user.isdigit(), "USER %s is not numeric" % user
    assert user == "10001", "USER %s, the Helm chart assumes 10001" % user
    runs = " ".join(rest for i, rest in instr if i == "RUN")
    assert re.search(r"useradd\b.*--uid\s+%s\b" % user, runs), "no useradd for uid %s" % user
    # The last USER must come after every RUN (a later RUN would be root).
    last_user = max(k for k, (i, _) in enumerate(instr) if i == "USER")
    assert all(i != "RUN" for i, _ in instr[last_user:]), "RUN after the last USER"


def test_runtime_entrypoint_and_files():
    instr = runtime_stage()[2]
    entry = [rest for i, rest in instr if i == "ENTRYPOINT"]
    assert entry and "membersync" in entry[-1] and "membersync-sim" not in entry[-1], entry
    copies = " ".join(rest for i, rest in instr if i == "COPY")
    for want in ("/build/membersync", "/build/membersync-sim", "widget/"):
        assert want in copies, "runtime stage does not COPY %s" % want


def test_dockerignore_keeps_build_trees_out_of_the_context():
    import fnmatch
    path = os.path.join(SOURCE_DIR, ".dockerignore")
    assert os.path.exists(path), ".dockerignore missing"
    pats = [ln.strip() for ln in open(path) if ln.strip() and not ln.startswith("#")]

    def ignored(p):
        res = False
        for pat in pats:
            neg = pat.startswith("!")
            pp = pat[1:] if neg else pat
            if fnmatch.fnmatch(p, pp) or fnmatch.fnmatch(p.split("/")[0], pp):
                res = not neg
        return res

    for p in (".git", "build", "build-asan", "build-ops", ".cache"):
        assert ignored(p), ".dockerignore does not exclude %s" % p
    for p in ("CMakeLists.txt", "common/ms_util.c", "widget/index.js", "config/membersync.conf",
              "schemas/avro/SyncJob.avsc", "tools/sim/sim.c"):
        assert not ignored(p), ".dockerignore excludes %s, which the build needs" % p


if __name__ == "__main__":
    deploylib.main(dict(globals()))
