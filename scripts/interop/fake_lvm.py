#!/usr/bin/env python3
"""A stand-in for LVM's `lvs`, `lvcreate` and `lvremove` in the volume-snapshot tests (this machine
kind has no device-mapper). Logical volumes are regular files: `<FELHOM_FAKE_LVM_DIR>/<VG>/<LV>`,
which is what the agent reads as the device with `snapshots.device_dir` set to that directory.
Only the argument vectors the agent's fenced backend builds are accepted; every call is appended
to `<dir>/commands.log` (one JSON array per line) so a test can assert the exact sequence.

- `lvs --reportformat json -o lv_name,vg_name,lv_attr,pool_lv,origin,lv_size --units b --nosuffix`
- `lvcreate --snapshot --setactivationskip n --permission r --name NAME VG/ORIGIN`: copies ORIGIN
  (a hard link with FELHOM_FAKE_LVM_LINK=1, for benchmarks of big volumes nobody writes to; exit 5
  and LVM's message when ORIGIN does not exist or NAME exists)
- `lvremove --yes VG/NAME`: removes it (exit 5 when it does not exist)
"""
import json
import os
import shutil
import sys

root = os.environ["FELHOM_FAKE_LVM_DIR"]
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.path.join(root, "commands.log"), "a") as log:
    log.write(json.dumps([tool] + args) + "\n")


def fail(message, code=5):
    sys.stderr.write(f"  {message}\n")
    sys.exit(code)


def volumes():
    out = []
    for vg in sorted(os.listdir(root)):
        if not os.path.isdir(os.path.join(root, vg)):
            continue
        for lv in sorted(os.listdir(os.path.join(root, vg))):
            snap = lv.startswith("felhom-snap-")
            out.append({"lv_name": lv, "vg_name": vg, "lv_attr": "Vri-a-tz--" if snap else "Vwi-aotz--", "pool_lv": "data",
                        "origin": "", "lv_size": str(os.path.getsize(os.path.join(root, vg, lv)))})
    return out


if tool == "lvs" and args == ["--reportformat", "json", "-o", "lv_name,vg_name,lv_attr,pool_lv,origin,lv_size", "--units", "b", "--nosuffix"]:
    print(json.dumps({"report": [{"lv": volumes()}]}, indent=2))
elif tool == "lvcreate" and len(args) == 8 and args[:7] == ["--snapshot", "--setactivationskip", "n", "--permission", "r", "--name", args[6]]:
    vg, origin = args[7].split("/", 1)
    src, dst = os.path.join(root, vg, origin), os.path.join(root, vg, args[6])
    if not os.path.isfile(src):
        fail(f'Failed to find logical volume "{vg}/{origin}"')
    if os.path.exists(dst):
        fail(f'Logical Volume "{args[6]}" already exists in volume group "{vg}"')
    if os.environ.get("FELHOM_FAKE_LVM_LINK") == "1":
        os.link(src, dst)
    else:
        shutil.copyfile(src, dst + ".tmp")
        os.rename(dst + ".tmp", dst)
    print(f'  Logical volume "{args[6]}" created.')
elif tool == "lvremove" and len(args) == 2 and args[0] == "--yes":
    vg, name = args[1].split("/", 1)
    path = os.path.join(root, vg, name)
    if not os.path.isfile(path):
        fail(f'Failed to find logical volume "{vg}/{name}"')
    os.remove(path)
    print(f'  Logical volume "{name}" successfully removed.')
else:
    fail(f"{tool} {' '.join(args)}: not simulated", 3)
