#!/usr/bin/env python3
"""`felhom snapshot encrypt|decrypt` against the independent implementation of docs/formats.md
(scripts/interop/snapshot_format.py): each reads what the other wrote, at the chunk edges; every
tampering is refused by the CLI with a non-zero exit, a reason, and no output file. The retention
job against felhom-hub and moto. And the real `felhom-agent snapshot run` process, killed with
SIGKILL in the middle of a multipart upload to moto (LVM through scripts/interop/fake_lvm.py, PVE
through `felhom pve-sim`): the next run removes the leftover snapshot volume, aborts the upload,
and snapshots again under a new id; `felhom-agent snapshot restore` gives back the volume's bytes.

Usage: snapshot_test.py BIN_DIR
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, Simulator  # noqa: E402
import snapshot_format as ref  # noqa: E402


def main():
    felhom = os.path.join(sys.argv[1], "felhom")
    checks = Checks("snapshot")
    work = tempfile.mkdtemp(prefix="felhom-snapshot-")
    try:
        key = os.urandom(32)
        keyfile = os.path.join(work, "key.hex")
        with open(keyfile, "w") as f:
            f.write(key.hex() + "\n")

        def path(name):
            return os.path.join(work, name)

        def cli(*args):
            return subprocess.run([felhom, "snapshot", *args], capture_output=True, text=True)

        chunk = 4096
        sizes = [0, 1, chunk, chunk + 1, 3 * chunk, 5 * chunk + 17]

        def cli_writes_python_reads():
            for size in sizes:
                plain = os.urandom(size)
                with open(path("in"), "wb") as f:
                    f.write(plain)
                r = cli("encrypt", "--key-file", keyfile, "--snapshot-id", f"vol-{size}", "--in", path("in"), "--out", path("obj"),
                        "--chunk-size", str(chunk))
                assert r.returncode == 0, r.stderr
                sid, back = ref.decrypt(key, open(path("obj"), "rb").read())
                assert sid == f"vol-{size}" and back == plain, size
                expected = 47 + len(sid) + max(size, 0) + 16 * max(1, -(-size // chunk))
                assert os.path.getsize(path("obj")) == expected, (size, os.path.getsize(path("obj")), expected)

        def python_writes_cli_reads():
            for size in sizes + [(1 << 20) + 5]:
                plain = os.urandom(size)
                c = 1 << 20 if size > 3 * chunk + 100 else chunk
                with open(path("obj"), "wb") as f:
                    f.write(ref.encrypt(key, b"py-1", plain, c))
                r = cli("decrypt", "--key-file", keyfile, "--in", path("obj"), "--out", path("out"))
                assert r.returncode == 0, r.stderr
                assert open(path("out"), "rb").read() == plain, size
                os.remove(path("out"))

        def tampering_is_refused_and_nothing_is_written():
            plain = os.urandom(4 * chunk + 10)
            good = ref.encrypt(key, b"t-1", plain, chunk)
            other = ref.encrypt(key, b"t-2", plain, chunk)
            head = 47 + 3
            full = chunk + 16

            def span(i):
                return slice(head + i * full, head + (i + 1) * full)
            cases = {
                "a flipped byte": good[:head + 100] + bytes([good[head + 100] ^ 1]) + good[head + 101:],
                "the last chunk cut short": good[:-1],
                "the last chunk dropped": good[:head + 4 * full],
                "a middle chunk dropped": good[:head + full] + good[head + 2 * full:],
                "two chunks swapped": good[:head] + good[span(1)] + good[span(0)] + good[head + 2 * full:],
                "a chunk from another snapshot": good[:head + full] + other[span(1)] + good[head + 2 * full:],
                "bytes appended": good + b"\0",
                "another magic": b"X" + good[1:],
            }
            for name, data in cases.items():
                with open(path("bad"), "wb") as f:
                    f.write(data)
                r = cli("decrypt", "--key-file", keyfile, "--in", path("bad"), "--out", path("never"))
                assert r.returncode != 0, name
                assert "failed (" in r.stderr and "no output was written" in r.stderr, (name, r.stderr)
                leftovers = [n for n in os.listdir(work) if n.startswith(".never") or n == "never"]
                assert not leftovers, (name, leftovers)
            # A wrong key (a replaced wrapped key unwraps to another data key).
            with open(path("good"), "wb") as f:
                f.write(good)
            with open(path("otherkey"), "wb") as f:
                f.write(os.urandom(32))
            r = cli("decrypt", "--key-file", path("otherkey"), "--in", path("good"), "--out", path("never"))
            assert r.returncode != 0 and "authentication_failed" in r.stderr and not os.path.exists(path("never")), r.stderr

        def bad_arguments_are_named():
            r = cli("decrypt", "--key-file", path("missing"), "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "--key-file" in r.stderr, r.stderr
            with open(path("short"), "w") as f:
                f.write("abcd")
            r = cli("decrypt", "--key-file", path("short"), "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "32 raw bytes or 64 hex digits" in r.stderr, r.stderr
            r = cli("encrypt", "--key-file", keyfile, "--snapshot-id", "bad id!", "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "snapshot id" in r.stderr, r.stderr
            assert not os.path.exists(path("x"))

        def same_volume_twice_gives_two_objects():
            with open(path("in"), "wb") as f:
                f.write(b"same")
            digests = set()
            for _ in range(2):
                assert cli("encrypt", "--key-file", keyfile, "--snapshot-id", "s", "--in", path("in"), "--out", path("obj")).returncode == 0
                digests.add(hashlib.sha256(open(path("obj"), "rb").read()).hexdigest())
            assert len(digests) == 2, "a fresh salt per object"

        def prune_deletes_objects_then_marks_records():
            # The retention job: felhom-hub (SQLite), moto with signature checking (scripts/moto).
            import boto3
            import botocore
            url = os.environ.get("FELHOM_TEST_S3_URL")
            assert url, "scripts/test starts moto and sets FELHOM_TEST_S3_URL"
            access, secret = os.environ["FELHOM_TEST_S3_ACCESS_KEY"], os.environ["FELHOM_TEST_S3_SECRET_KEY"]
            bucket = os.environ.get("FELHOM_TEST_S3_BUCKET", "felhom-test")
            hub = HubProcess(os.path.join(sys.argv[1], "felhom-hub"), f"sqlite:{work}/hub.sqlite", "prune-test-operator-key-0123456789")
            try:
                cid = hub.call("POST", "/api/v1/customers", {"name": "P", "email": "p@example.hu", "domain": "p.example.hu"})["id"]
                made = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "box"})
                host, host_key = made["id"], made["api_key"]
                s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access, aws_secret_access_key=secret)
                keys = []
                for day in range(1, 17):
                    sid = f"202611{day:02d}T020000Z-0000{day:04d}"
                    key = f"boxes/{host}/local-lvm/vm-100-disk-1/{sid}.felsnap"
                    s3.put_object(Bucket=bucket, Key=key, Body=b"x" * day)
                    keys.append(key)
                    hub.call("POST", "/api/v1/volume-snapshots", {
                        "volume_id": "local-lvm:vm-100-disk-1", "snapshot_id": sid, "created_at": f"2026-11-{day:02d}T02:00:00Z",
                        "size": day, "object_size": day, "checksum": "sha256:" + "0" * 64, "encryption_key_id": "snapkey:0123456789abcdef",
                        "wrapped_data_key": "v1." + "A" * 80, "object_key": key, "state": "complete"}, key=host_key)
                base = [felhom, "snapshot", "prune", "--hub", hub.url, "--host", host, "--s3-endpoint", url, "--s3-region", "us-east-1",
                        "--s3-bucket", bucket]
                env = dict(os.environ, FELHOM_OPERATOR_KEY=hub.key, FELHOM_S3_ACCESS_KEY_ID=access, FELHOM_S3_SECRET_ACCESS_KEY=secret)
                dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True, env=env)
                assert dry.returncode == 0 and dry.stdout.count("would delete") == 2, dry.stdout + dry.stderr
                for key in keys:
                    s3.head_object(Bucket=bucket, Key=key)  # a dry run deletes nothing
                no_creds = subprocess.run(base, capture_output=True, text=True, env=dict(os.environ, FELHOM_OPERATOR_KEY=hub.key))
                assert no_creds.returncode != 0 and "FELHOM_S3_ACCESS_KEY_ID" in no_creds.stderr, no_creds.stderr
                run = subprocess.run(base, capture_output=True, text=True, env=env)
                assert run.returncode == 0 and "2 records marked deleted" in run.stdout, run.stdout + run.stderr
                assert secret not in run.stdout + run.stderr
                for i, key in enumerate(keys):
                    try:
                        s3.head_object(Bucket=bucket, Key=key)
                        present = True
                    except botocore.exceptions.ClientError:
                        present = False
                    assert present == (i >= 2), (key, present)
                records = hub.call("GET", f"/api/v1/hosts/{host}/volume-snapshots")["snapshots"]
                states = {r["snapshot_id"][-4:]: r["state"] for r in records}
                assert [k for k, v in states.items() if v == "deleted"] == ["0002", "0001"], states
                again = subprocess.run(base, capture_output=True, text=True, env=env)
                assert again.returncode == 0 and "0 beyond the newest 14" in again.stdout, again.stdout
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[2:]]})
            finally:
                hub.close()

        def agent_killed_mid_upload_cleans_up_and_retries():
            import base64
            import json
            import boto3
            url = os.environ["FELHOM_TEST_S3_URL"]
            access, secret = os.environ["FELHOM_TEST_S3_ACCESS_KEY"], os.environ["FELHOM_TEST_S3_SECRET_KEY"]
            bucket = os.environ.get("FELHOM_TEST_S3_BUCKET", "felhom-test")
            s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access, aws_secret_access_key=secret)
            agent_bin = os.path.join(sys.argv[1], "felhom-agent")
            with Simulator(felhom) as sim:
                hub = HubProcess(os.path.join(sys.argv[1], "felhom-hub"), f"sqlite:{work}/agent-hub.sqlite", "snap-crash-operator-key-0123456789")
                try:
                    cid = hub.call("POST", "/api/v1/customers", {"name": "S", "email": "s@example.hu", "domain": "s.example.hu"})["id"]
                    host = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "box"})["id"]
                    token = hub.call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
                    pbs_key = os.urandom(32)
                    with open(path("pbs.enc"), "w") as f:
                        json.dump({"kdf": None, "data": base64.b64encode(pbs_key).decode()}, f)
                    lvm = path("lvm")
                    os.makedirs(os.path.join(lvm, "pve"))
                    volume = os.urandom(1 << 20) * 20 + b"tail"  # three 8 MiB upload parts
                    origin = os.path.join(lvm, "pve", "vm-100-disk-1")
                    with open(origin, "wb") as f:
                        f.write(volume)
                    fake_bin = path("bin")
                    os.makedirs(fake_bin)
                    for tool in ("lvs", "lvcreate", "lvremove"):
                        os.symlink(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_lvm.py"), os.path.join(fake_bin, tool))
                    config = path("agent.json")
                    with open(config, "w") as f:
                        json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                                           "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                                   "hub": {"url": hub.url, "enrollment_token": token}, "state_dir": path("state"),
                                   "backup": {"key_file": path("pbs.enc")},
                                   # moto 5.2 (signature checking on) refuses any list whose prefix holds a '/'
                                   # (boto3's own requests too), so this box's prefix has none.
                                   "snapshots": {"device_dir": lvm, "prefix": f"box-{host}-", "s3": {"endpoint": url, "region": "us-east-1", "bucket": bucket,
                                                                           "access_key_id": access}}}, f)
                    env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ["PATH"], FELHOM_FAKE_LVM_DIR=lvm,
                               FELHOM_AGENT_SNAPSHOTS_S3_SECRET_ACCESS_KEY=secret)
                    env.pop("FELHOM_AGENT_FAILPOINT", None)
                    run = [agent_bin, "snapshot", "run", "--config", config, "--volume", "local-lvm:vm-100-disk-1"]
                    prefix = f"box-{host}-"

                    def commands():
                        with open(os.path.join(lvm, "commands.log")) as f:
                            return [json.loads(line) for line in f]

                    def snapshot_lvs():
                        return [n for n in os.listdir(os.path.join(lvm, "pve")) if n.startswith("felhom-snap-")]

                    def open_uploads():
                        return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]

                    killed = subprocess.run(run, capture_output=True, text=True, timeout=300,
                                            env=dict(env, FELHOM_AGENT_FAILPOINT="snapshot.during_upload"))
                    assert killed.returncode == -9, (killed.returncode, killed.stdout, killed.stderr[-2000:])
                    leftover = snapshot_lvs()
                    assert len(leftover) == 1, leftover
                    cut = open_uploads()
                    assert len(cut) == 1 and cut[0].startswith(prefix + "local-lvm/vm-100-disk-1/"), cut
                    first = commands()
                    assert [c[0] for c in first] == ["lvs", "lvcreate"], first
                    assert first[1][-2:] == [leftover[0], "pve/vm-100-disk-1"], first[1]

                    again = subprocess.run(run, capture_output=True, text=True, timeout=300, env=env)
                    assert again.returncode == 0, again.stdout + again.stderr
                    out = again.stdout
                    assert f"removed the leftover snapshot pve/{leftover[0]}" in out, out
                    assert f"aborted the unfinished upload of {cut[0]}" in out, out
                    assert secret not in out + again.stderr
                    assert snapshot_lvs() == [] and open_uploads() == [], (snapshot_lvs(), open_uploads())
                    second = commands()[len(first):]
                    assert [c[0] for c in second] == ["lvs", "lvremove", "lvcreate", "lvremove"], second
                    assert second[1] == ["lvremove", "--yes", f"pve/{leftover[0]}"], second[1]
                    assert second[2][-2] != leftover[0] and second[3] == ["lvremove", "--yes", f"pve/{second[2][-2]}"], second

                    records = hub.call("GET", f"/api/v1/hosts/{host}/volume-snapshots")["snapshots"]
                    assert len(records) == 1 and records[0]["state"] == "complete", records
                    r = records[0]
                    assert r["object_key"] != cut[0] and r["size"] == len(volume), r  # a new snapshot id, key and salt
                    obj = s3.get_object(Bucket=bucket, Key=r["object_key"])["Body"].read()
                    assert len(obj) == r["object_size"] and "sha256:" + hashlib.sha256(obj).hexdigest() == r["checksum"], r
                    assert volume[:4096] not in obj, "the object is encrypted"
                    with open(os.path.join(path("state"), "journal.jsonl")) as f:
                        ops = {}
                        for line in f:
                            e = json.loads(line)
                            ops.setdefault(e["op"], []).append(e["step"])
                    snaps = [steps for op, steps in ops.items() if op.startswith("snap-")]
                    assert sorted(s[-1] for s in snaps) == ["done", "failed"], ops
                    events = hub.call("GET", f"/api/v1/events?host_id={host}&type=volume_snapshot_completed")["events"]
                    assert len(events) == 1, events
                    hub_db = open(f"{work}/agent-hub.sqlite", "rb").read()
                    for form in (pbs_key, pbs_key.hex().encode(), base64.b64encode(pbs_key)):
                        assert form not in hub_db, "the hub holds no key in the clear"

                    restore = [agent_bin, "snapshot", "restore", "--config", config, "--volume", "local-lvm:vm-100-disk-1"]
                    back = subprocess.run(restore + ["--to", path("restored")], capture_output=True, text=True, timeout=300, env=env)
                    assert back.returncode == 0, back.stdout + back.stderr
                    assert open(path("restored"), "rb").read() == volume, "restored bytes differ"
                    over = subprocess.run(restore + ["--to", origin], capture_output=True, text=True, timeout=300, env=env)
                    assert over.returncode != 0 and "target_exists" in over.stderr, over.stdout + over.stderr
                    assert open(origin, "rb").read() == volume
                    s3.delete_object(Bucket=bucket, Key=r["object_key"])
                finally:
                    hub.close()

        checks.check("the CLI writes, the independent implementation reads (empty, 1 byte, chunk edges)", cli_writes_python_reads)
        checks.check("the independent implementation writes, the CLI reads", python_writes_cli_reads)
        checks.check("tampering and a wrong key are refused with the reason, and no output file appears",
                     tampering_is_refused_and_nothing_is_written)
        checks.check("bad arguments are refused naming what is wrong", bad_arguments_are_named)
        checks.check("encrypting the same volume twice gives two different objects (fresh salt)", same_volume_twice_gives_two_objects)
        checks.check("felhom snapshot prune keeps the newest 14 per volume: objects deleted in moto, then the hub's records marked",
                     prune_deletes_objects_then_marks_records)
        checks.check("felhom-agent snapshot run killed (SIGKILL) mid-upload: the next run removes the snapshot LV, aborts the upload, "
                     "snapshots anew; restore gives the bytes back", agent_killed_mid_upload_cleans_up_and_retries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
