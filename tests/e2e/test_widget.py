"""The member sync widget in real headless Chromium against the real
pipeline (issue 3): this starts the services (or reuses MS_KAFKA_BOOTSTRAP /
MS_PG_DSN), the pipeline roles, `membersync-sim` member systems with latency
so progress is visible, and the api; then runs the Playwright suite
tests/e2e/browser/widget.test.mjs with node and fails if it fails.

Screenshots land in tests/output/screenshots/ (MS_SCREENSHOT_DIR overrides).
Needs Debian's chromium and playwright-core (scripts/setup-browser.sh, run
here once if they are missing)."""

import json
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mslib  # noqa: E402
from test_api import SAMPLE, ApiStack  # noqa: E402

BROWSER_DIR = os.path.join(HERE, "browser")
CHROMIUM = os.environ.get("MS_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("MS_SCREENSHOT_DIR") or os.path.join(mslib.SOURCE_DIR, "tests", "output",
                                                            "screenshots")
MARKUP_NAME = '<img src=x onerror="window.__xss=3">Cornerstone <b>bold</b>'
MARKUP_IDS = ['<img src=x onerror="window.__xss=1">', "<script>window.__xss=2</script>"]

FIX = {}


def ensure_browser():
    have = os.path.exists(CHROMIUM) and os.path.isdir(
        os.path.join(BROWSER_DIR, "node_modules", "playwright-core"))
    if not have:
        subprocess.run(["bash", os.path.join(mslib.SOURCE_DIR, "scripts", "setup-browser.sh")],
                       check=True, timeout=900)


def markup_dataset(workdir):
    """The cornerstone sample plus records whose external ids are markup
    (each lacks a member number, so it is listed in the error details)."""
    with open(os.path.join(SAMPLE, "cornerstone", "members-v1.json")) as f:
        data = json.load(f)
    for i, ext in enumerate(MARKUP_IDS):
        data.append({"id": ext, "firstName": "Mark", "lastName": "Up %d" % i,
                     "membershipStatus": "Active", "roles": []})
    path = os.path.join(workdir, "markup.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def setup(svc, holder):
    ensure_browser()
    st = ApiStack(svc, "wdg")
    holder["stack"] = st
    orgs = {k: "%s-%s" % (k, st.tag) for k in ("orgA", "orgB", "orgC", "orgD")}
    # Org A: 3000 generated members, 100 a page, 200 ms a page: about 30
    # progress events over several seconds.  Its Consio is the sample.
    gen = st.sim("cornerstone", generate=3000, seed=11, page_size=100, latency_ms=200)
    cx = st.sim("consio", file=os.path.join(SAMPLE, "consio", "members-v1.json"), page_size=25,
                latency_ms=50)
    # Org B: the cornerstone sample (record errors; markup in a name).
    sample = st.sim("cornerstone", file=os.path.join(SAMPLE, "cornerstone", "members-v1.json"),
                    page_size=25, latency_ms=50)
    # Org C: markup as external ids and as the integration's display name.
    markup = st.sim("cornerstone", file=markup_dataset(st.workdir), page_size=100)
    small = st.sim("cornerstone", generate=200, seed=3, page_size=50, latency_ms=50)
    st.integration(orgs["orgA"], "cornerstone", gen, page_size=100)
    st.integration(orgs["orgA"], "consio", cx, page_size=25)
    st.integration(orgs["orgB"], "cornerstone", sample, page_size=25)
    st.integration(orgs["orgC"], "cornerstone", markup, page_size=100, name=MARKUP_NAME)
    st.integration(orgs["orgD"], "cornerstone", small, page_size=50)
    st.start_roles()
    api = st.start_api()
    FIX.update({
        "base": api.base,
        "orgs": orgs,
        "tokens": {
            "adminA": st.token("anna", orgs["orgA"]),
            "adminB": st.token("bjorn", orgs["orgB"]),
            "adminC": st.token("cato", orgs["orgC"]),
            "global": st.token("root", "hq", role="global_admin"),
        },
        "markupName": MARKUP_NAME,
        "markupIds": MARKUP_IDS,
    })


def run_browser_suite():
    """Runs the Playwright suite; echoes each browser test's PASS/FAIL line
    and returns (passed, failed)."""
    os.makedirs(SHOTS, exist_ok=True)
    env = dict(os.environ, MSW_BASE=FIX["base"], MSW_FIXTURE=json.dumps(FIX), MSW_SHOTS=SHOTS,
               MSW_CHROMIUM=CHROMIUM)
    t0 = time.monotonic()
    p = subprocess.Popen(["node", "widget.test.mjs"] + sys.argv[1:], cwd=BROWSER_DIR, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    passed = failed = 0
    try:
        for raw in p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("PASS "):
                passed += 1
                print(line, flush=True)
            elif line.startswith("FAIL "):
                failed += 1
                print(line, flush=True)
            else:
                # Details and node's own summary, indented so that only this
                # module's summary line counts.
                print("  " + line, flush=True)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    sys.stderr.write("  (browser suite: %.1fs, exit %s)\n" % (time.monotonic() - t0, rc))
    if rc != 0 and failed == 0:
        print("FAIL browser suite: node exited with %s" % rc, flush=True)
        failed += 1
    return passed, failed


def main():
    def on_term(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    holder = {}
    passed = failed = 0
    try:
        with mslib.Services() as svc:
            try:
                t0 = time.monotonic()
                setup(svc, holder)
                sys.stderr.write("  (setup: %.1fs)\n" % (time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001 - reported as a failure
                traceback.print_exc()
                if holder.get("stack"):
                    holder["stack"].dump_logs()
                print("FAIL setup: %s" % " ".join(str(e).split())[:500], flush=True)
                failed += 1
            else:
                p, f = run_browser_suite()
                passed += p
                failed += f
                if f and holder.get("stack"):
                    holder["stack"].dump_logs()
            if holder.get("stack"):
                holder["stack"].stop()
    except KeyboardInterrupt:
        print("FAIL interrupted", flush=True)
        failed += 1
    finally:
        if holder.get("stack"):
            holder["stack"].stop()
        mslib.stop_all_procs()
        print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    main()
