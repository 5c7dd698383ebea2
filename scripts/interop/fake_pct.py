#!/usr/bin/env python3
"""A stand-in for Proxmox's `pct` in the backup end-to-end test: the agent's fenced root commands
reach the simulated host through it, as they reach a real host through the real `pct`.

- `pct exec VMID -- felhom-controller stacks list --json`: fails as pct does when the guest does
  not exist (exit 2) or is not running (exit 255), asked of the simulator's API; otherwise the
  guest's controller answers — here the real felhom-controller binary over the real Docker engine
  (the scratch guest restored from a backup of this guest runs the same stacks).
- `pct exec VMID -- systemctl restart felhom-controller`: exit 0 for a running guest.
- `pct push VMID SRC DST …`: SRC is copied to PUSHED_DIR/VMID/ (the guest's file system); a DST
  under /usr/local/bin/ goes to GUESTS_ROOT/VMID/usr/local/bin/ with the asked --perms.
- With `guests_root` configured (controller updates): each guest's controller is the executable at
  GUESTS_ROOT/VMID/usr/local/bin/felhom-controller. `pct exec VMID -- /usr/local/bin/felhom-controller
  --version` runs it; `pct pull VMID /usr/local/bin/felhom-controller DEST` copies it out; `pct exec
  VMID -- mv -f …/felhom-controller.new …/felhom-controller` renames inside the guest; `systemctl
  restart felhom-controller` stops the guest's running controller (pid file) and starts the one now
  in place with `run` (env: controller_env + controller_run_env), detached, logging to
  GUESTS_ROOT/VMID/controller.log.
- Called as `pvesm`: `pvesm set STORAGE --encryption-key VALUE` becomes the simulator's
  `PUT /storage/STORAGE` with the root token (what pvesm does on a real host).
Anything else fails as not simulated. Configuration: the JSON file named by FELHOM_FAKE_PCT.
"""
import json, os, shutil, signal, ssl, subprocess, sys, time, urllib.error, urllib.parse, urllib.request

cfg = json.load(open(os.environ["FELHOM_FAKE_PCT"]))
args = sys.argv[1:]


def guest_state(vmid):
    ctx = ssl.create_default_context(cafile=cfg["sim_cert"])
    ctx.check_hostname = False
    req = urllib.request.Request(f"{cfg['sim_url']}/nodes/pve1/lxc/{vmid}/status/current",
                                 headers={"Authorization": f"PVEAPIToken={cfg['sim_token']}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return json.load(r)["data"]["status"]
    except Exception:
        return None


def need_running(vmid):
    state = guest_state(vmid)
    if state is None:
        sys.stderr.write(f"Configuration file 'nodes/pve1/lxc/{vmid}.conf' does not exist\n")
        sys.exit(2)
    if state != "running":
        sys.stderr.write(f"container '{vmid}' not running!\n")
        sys.exit(255)


if os.path.basename(sys.argv[0]) == "pvesm":
    if len(args) == 4 and args[0] == "set" and args[2] == "--encryption-key":
        ctx = ssl.create_default_context(cafile=cfg["sim_cert"])
        ctx.check_hostname = False
        body = urllib.parse.urlencode({"encryption-key": args[3]}).encode()
        req = urllib.request.Request(f"{cfg['sim_url']}/storage/{args[1]}", data=body, method="PUT",
                                     headers={"Authorization": f"PVEAPIToken={cfg['sim_token']}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=20):
                sys.exit(0)
        except urllib.error.HTTPError as e:
            sys.stderr.write(f"update storage failed: {e.code}\n")
            sys.exit(255)
    sys.stderr.write(f"pvesm {' '.join(args[:2])}: not simulated\n")
    sys.exit(1)
if len(args) == 7 and args[0] == "exec" and args[2:] == ["--", "felhom-controller", "stacks", "list", "--json"]:
    need_running(args[1])
    r = subprocess.run([cfg["controller"], "stacks", "list", "--json"], env=dict(os.environ, **cfg["controller_env"]),
                       capture_output=True, text=True, timeout=120)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
BINARY = "/usr/local/bin/felhom-controller"


def guest_root(vmid):
    return os.path.join(cfg["guests_root"], vmid)


def restart_controller(vmid):
    root = guest_root(vmid)
    pidfile = os.path.join(root, "controller.pid")
    if os.path.exists(pidfile):
        pid = int(open(pidfile).read())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = open(os.path.join(root, "controller.log"), "a")
    env = dict(os.environ, **cfg["controller_env"], **cfg.get("controller_run_env", {}))
    p = subprocess.Popen([root + BINARY, "run"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(p.pid))
    os.replace(pidfile + ".tmp", pidfile)


if len(args) == 6 and args[0] == "exec" and args[2:] == ["--", "systemctl", "restart", "felhom-controller"]:
    need_running(args[1])
    if "guests_root" in cfg:
        restart_controller(args[1])
    sys.exit(0)
if "guests_root" in cfg and len(args) == 5 and args[0] == "exec" and args[2:] == ["--", BINARY, "--version"]:
    need_running(args[1])
    try:
        r = subprocess.run([guest_root(args[1]) + BINARY, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        sys.stderr.write(f"exec failed: {e}\n")
        sys.exit(255)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
if "guests_root" in cfg and len(args) == 4 and args[0] == "pull" and args[2] == BINARY:
    need_running(args[1])
    shutil.copyfile(guest_root(args[1]) + BINARY, args[3])
    sys.exit(0)
if "guests_root" in cfg and len(args) == 7 and args[0] == "exec" and args[2:] == ["--", "mv", "-f", BINARY + ".new", BINARY]:
    need_running(args[1])
    os.replace(guest_root(args[1]) + BINARY + ".new", guest_root(args[1]) + BINARY)
    sys.exit(0)
if len(args) >= 4 and args[0] == "push":
    if guest_state(args[1]) is None:
        sys.stderr.write(f"Configuration file 'nodes/pve1/lxc/{args[1]}.conf' does not exist\n")
        sys.exit(2)
    if "guests_root" in cfg and args[3].startswith("/usr/local/bin/"):
        need_running(args[1])
        target = guest_root(args[1]) + args[3]
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(args[2], target + ".tmp")
        perms = args[args.index("--perms") + 1] if "--perms" in args else "0644"
        os.chmod(target + ".tmp", int(perms, 8))
        os.replace(target + ".tmp", target)
        sys.exit(0)
    dest = os.path.join(cfg["pushed_dir"], args[1])
    os.makedirs(dest, exist_ok=True)
    shutil.copy(args[2], os.path.join(dest, os.path.basename(args[3])))
    sys.exit(0)
sys.stderr.write(f"pct {' '.join(args)}: not simulated\n")
sys.exit(1)
