#!/usr/bin/env python3
"""membersync benchmark: sync N generated members end to end on the real
broker and PostgreSQL (services from the environment, else a private pair
started by tests/harness/services.sh) and print records/s for a first sync
and an unchanged re-sync, and the connector's peak RSS.

    python3 bench/bench.py [--members N ...] [--system cornerstone|consio]
                           [--page-size 1000]

Figures: `job` is the connector's own time (job started -> finished, all
members written to PostgreSQL with their MemberChanged events in the outbox);
`e2e` is trigger -> every event published to Kafka by the relay and the
status row projected.  RSS is VmHWM of the connector process after the run.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "harness"))
import mslib  # noqa: E402
from pipeline import Pipeline  # noqa: E402


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_sync(p, org, system, trigger):
    t0 = time.monotonic()
    s = p.trigger(org, system, role="system", trigger=trigger, timeout=3600)
    t_job_done = time.monotonic()
    p.wait_outbox_empty(timeout=3600)
    p.wait_status(org, system, s["job_id"], timeout=600)
    t_e2e = time.monotonic()
    secs = p.query("select extract(epoch from finished_at - started_at) from "
                   "membersync.sync_jobs where job_id = :'p1'", s["job_id"])[0][0]
    return s, float(secs), t_job_done - t0, t_e2e - t0


def run(svc, n, system, page_size):
    p = Pipeline(svc, "bench")
    org = "bench-%s" % p.tag
    sim = p.sim(system, generate=n, seed=42)
    p.integration(org, system, sim, page_size=page_size)
    p.start_roles(system)
    conn = p.procs["connector-%s" % system]
    watched = {"connector": conn.popen.pid, "relay": p.procs["relay"].popen.pid,
               "simulator": sim.popen.pid}
    results = {"members": n, "system": system, "page_size": page_size,
               "load_avg_1m_before": os.getloadavg()[0]}
    for label, trig in (("first", "scheduled"), ("unchanged", "scheduled")):
        cpu0 = {k: cpu_seconds(pid) for k, pid in watched.items()}
        s, job_s, trig_s, e2e_s = one_sync(p, org, system, trig)
        cpu = {k: cpu_seconds(pid) - cpu0[k] for k, pid in watched.items()}
        expect = {"first": ("created", n), "unchanged": ("unchanged", n)}[label]
        if s[expect[0]] != expect[1]:
            raise SystemExit("bench: %s sync gave %s" % (label, json.dumps(s)))
        results[label] = {
            "job_seconds": round(job_s, 2),
            "job_records_per_s": round(n / job_s),
            "e2e_seconds": round(e2e_s, 2),
            "e2e_records_per_s": round(n / e2e_s),
            # CPU per record is steadier than wall time on a shared machine.
            "cpu_us_per_record": {k: round(v * 1e6 / n, 1) for k, v in cpu.items()},
        }
    results["connector_peak_rss_mb"] = round(vm_hwm_kb(conn.popen.pid) / 1024, 1)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[100000])
    ap.add_argument("--system", default="cornerstone", choices=["cornerstone", "consio"])
    ap.add_argument("--page-size", type=int, default=1000)
    args = ap.parse_args()
    os.environ.setdefault("MS_BIN_DIR", os.path.join(mslib.SOURCE_DIR, "build"))
    with mslib.Services() as svc:
        try:
            for n in args.members:
                r = run(svc, n, args.system, args.page_size)
                print(json.dumps(r), flush=True)
                print("N=%d %s: first sync %d rec/s (job) / %d rec/s (e2e); unchanged re-sync "
                      "%d rec/s (job) / %d rec/s (e2e); connector peak RSS %.1f MB" % (
                          n, args.system, r["first"]["job_records_per_s"],
                          r["first"]["e2e_records_per_s"], r["unchanged"]["job_records_per_s"],
                          r["unchanged"]["e2e_records_per_s"], r["connector_peak_rss_mb"]),
                      flush=True)
        finally:
            mslib.stop_all_procs()


if __name__ == "__main__":
    main()
