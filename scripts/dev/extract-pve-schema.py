#!/usr/bin/env python3
"""Extract the Proxmox VE API schema of the endpoints the simulator serves.

Usage: extract-pve-schema.py PVE-API-FLAT.JSON OUT.JSON
Input is pve-api-flat.json (the pve-docs apidata.js tree, keyed by path). The output keeps, for each
covered (method, path), the parameters and returns, with descriptions stripped to keep it small.
The output is committed as Sources/PVESimulator/Resources/pve-schema-subset.json; this script only
documents how it was made (the project never needs the full schema at run time).
"""
import json, sys

COVERED = [
    ("GET", "/version"), ("GET", "/nodes"), ("GET", "/nodes/{node}/status"),
    ("GET", "/nodes/{node}/lxc"), ("POST", "/nodes/{node}/lxc"),
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"),
    ("GET", "/nodes/{node}/lxc/{vmid}/config"), ("PUT", "/nodes/{node}/lxc/{vmid}/config"),
    ("GET", "/nodes/{node}/lxc/{vmid}/pending"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"), ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"), ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot"),
    ("DELETE", "/nodes/{node}/lxc/{vmid}"),
    ("GET", "/nodes/{node}/lxc/{vmid}/snapshot"), ("POST", "/nodes/{node}/lxc/{vmid}/snapshot"),
    ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}"),
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"),
    ("GET", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config"),
    ("POST", "/nodes/{node}/vzdump"),
    ("GET", "/nodes/{node}/tasks"), ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"), ("DELETE", "/nodes/{node}/tasks/{upid}"),
    ("GET", "/storage"), ("GET", "/storage/{storage}"), ("GET", "/nodes/{node}/storage"),
    ("GET", "/nodes/{node}/storage/{storage}/status"), ("GET", "/nodes/{node}/storage/{storage}/content"),
    ("GET", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("GET", "/cluster/nextid"), ("GET", "/access/permissions"),
]
DROP = {"description", "verbose_description", "typetext", "renderer", "format_description", "title",
        "print_width", "instance-types"}

def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in DROP}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v

flat = json.load(open(sys.argv[1]))
out = {}
for method, path in COVERED:
    m = flat[path][method]
    out[f"{method} {path}"] = {
        "parameters": strip(m.get("parameters", {})),
        "returns": strip(m.get("returns", {})),
        "allowtoken": m.get("allowtoken", 1),
    }
json.dump(out, open(sys.argv[2], "w"), indent=1, sort_keys=True)
print(f"{len(out)} endpoints written to {sys.argv[2]}")
