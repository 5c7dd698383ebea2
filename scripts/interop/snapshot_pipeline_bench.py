#!/usr/bin/env python3
"""The whole volume-snapshot pipeline, measured: `felhom-agent snapshot run` reads a SIZE-MiB volume
(a file behind scripts/interop/fake_lvm.py), seals it (AES-256-GCM), hashes the object (SHA-256,
on another core) and uploads it to moto on loopback in 8 MiB parts; `/usr/bin/time -v` gives the
wall time and the agent's peak RSS. Then `felhom-agent snapshot restore` brings it back (verified)
and the bytes are compared. Needs FELHOM_TEST_S3_* (scripts/moto start). Prints RESULT lines.

Usage: snapshot_pipeline_bench.py BIN_DIR [SIZE_MIB=4096] [WORK_DIR=/var/tmp]
(felhom-agent from BIN_DIR; felhom and felhom-hub from FELHOM_BENCH_PEERS_DIR when set, else BIN_DIR)
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import HubProcess, Simulator  # noqa: E402

bin_dir = sys.argv[1]
peers_dir = os.environ.get("FELHOM_BENCH_PEERS_DIR", bin_dir)
size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
work = tempfile.mkdtemp(prefix="felhom-snap-bench-", dir=sys.argv[3] if len(sys.argv) > 3 else "/var/tmp")


def timed(cmd, env, wrap=()):
    wrap = list(wrap)
    r = subprocess.run(["/usr/bin/time", "-v"] + wrap + cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed: {r.stdout[-1000:]} {r.stderr[-2000:]}")
    wall = rss = None
    for line in r.stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            parts = line.split(": ", 1)[1].split(":")
            wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
        if line.startswith("Maximum resident set size"):
            rss = int(line.split(": ")[1])
    return wall, rss, r.stdout


try:
    url = os.environ["FELHOM_TEST_S3_URL"]
    access, secret = os.environ["FELHOM_TEST_S3_ACCESS_KEY"], os.environ["FELHOM_TEST_S3_SECRET_KEY"]
    bucket = os.environ.get("FELHOM_TEST_S3_BUCKET", "felhom-test")
    lvm = os.path.join(work, "lvm")
    os.makedirs(os.path.join(lvm, "pve"))
    origin = os.path.join(lvm, "pve", "vm-100-disk-1")
    print(f"== writing a {size_mib} MiB volume to {origin}", flush=True)
    block = os.urandom(1 << 20)
    with open(origin, "wb") as f:
        for i in range(size_mib):
            f.write(i.to_bytes(8, "little") + block[8:])
    fake_bin = os.path.join(work, "bin")
    os.makedirs(fake_bin)
    for tool in ("lvs", "lvcreate", "lvremove"):
        os.symlink(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_lvm.py"), os.path.join(fake_bin, tool))
    with open(os.path.join(work, "pbs.enc"), "w") as f:
        json.dump({"kdf": None, "data": base64.b64encode(os.urandom(32)).decode()}, f)
    with Simulator(os.path.join(peers_dir, "felhom")) as sim:
        hub = HubProcess(os.path.join(peers_dir, "felhom-hub"), f"sqlite:{work}/hub.sqlite", "bench-operator-key-0123456789abcdef")
        try:
            cid = hub.call("POST", "/api/v1/customers", {"name": "B", "email": "b@example.hu", "domain": "b.example.hu"})["id"]
            host = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "bench"})["id"]
            token = hub.call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
            config = os.path.join(work, "agent.json")
            with open(config, "w") as f:
                json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                                   "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                           "hub": {"url": hub.url, "enrollment_token": token}, "state_dir": os.path.join(work, "state"),
                           "backup": {"key_file": os.path.join(work, "pbs.enc")},
                           "snapshots": {"device_dir": lvm, "prefix": f"bench-{host}-",
                                         "s3": {"endpoint": url, "region": "us-east-1", "bucket": bucket, "access_key_id": access}}}, f)
            env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ["PATH"], FELHOM_FAKE_LVM_DIR=lvm, FELHOM_FAKE_LVM_LINK="1",
                       FELHOM_AGENT_SNAPSHOTS_S3_SECRET_ACCESS_KEY=secret)
            agent = os.path.join(bin_dir, "felhom-agent")
            wall, rss, out = timed([agent, "snapshot", "run", "--config", config, "--volume", "local-lvm:vm-100-disk-1"], env,
                                  os.environ.get("FELHOM_BENCH_WRAP", "").split())
            mb = size_mib * 1.048576
            print(f"RESULT pipeline {size_mib} MiB (read → seal → SHA-256 → multipart upload to moto): {wall:.1f}s "
                  f"({mb / wall:.0f} MB/s), peak RSS {rss} KiB ({rss / 1024:.0f} MiB)", flush=True)
            back = os.path.join(work, "restored")
            wall, rss, _ = timed([agent, "snapshot", "restore", "--config", config, "--volume", "local-lvm:vm-100-disk-1", "--to", back], env)
            print(f"RESULT restore {size_mib} MiB (ranged GET from moto → verify → write): {wall:.1f}s ({mb / wall:.0f} MB/s), "
                  f"peak RSS {rss} KiB ({rss / 1024:.0f} MiB)", flush=True)
            same = subprocess.run(["cmp", origin, back]).returncode == 0
            print("round trip: identical" if same else "round trip: DIFFERENT")
            record = hub.call("GET", f"/api/v1/hosts/{host}/volume-snapshots")["snapshots"][0]
            import boto3
            boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access,
                         aws_secret_access_key=secret).delete_object(Bucket=bucket, Key=record["object_key"])
            sys.exit(0 if same else 1)
        finally:
            hub.close()
finally:
    shutil.rmtree(work, ignore_errors=True)
