import Foundation
import Proxmox

/// The fenced root commands as a simulated host answers them: `pct exec VMID -- felhom-controller
/// stacks list --json` from the guest's app-health payload (``PVESimEngine/execStacksList(vmid:)``),
/// `pct push` accepted for an existing guest, `pct exec VMID -- systemctl restart felhom-controller`
/// accepted for a running guest (counted: ``PVESimEngine/controllerRestarts``), `pvesm set STORAGE
/// --encryption-key VALUE` as `PUT /storage` does it, `lsblk --json …` and `mount UUID=…` from the
/// host's attached disks (``PVESimEngine/attachDisk(_:)``), `cat /sys/fs/cgroup/lxc/VMID/memory.events`
/// with injected OOM kills (``PVESimEngine/injectOOMKill(vmid:count:)``), and a box's set-up:
/// `pveum` on the simulator's users, tokens, roles and ACLs, `pvenode cert info`, `pveversion`,
/// `pct create` as root@pam. Anything else fails as not simulated.
public struct SimCommandRunner: CommandRunner {
    let engine: PVESimEngine

    public init(engine: PVESimEngine) { self.engine = engine }

    public func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        if executable == "pct", arguments.count == 7, arguments[0] == "exec", let vmid = Int(arguments[1]),
            Array(arguments[2...]) == ["--", "felhom-controller", "stacks", "list", "--json"]
        {
            let (code, out, err) = await engine.execStacksList(vmid: vmid)
            return CommandResult(exitCode: code, stdout: out, stderr: err)
        }
        if executable == "pct", arguments.count == 6, arguments[0] == "exec", let vmid = Int(arguments[1]),
            Array(arguments[2...]) == ["--", "systemctl", "restart", "felhom-controller"]
        {
            let (code, err) = await engine.execRestartController(vmid: vmid)
            return CommandResult(exitCode: code, stdout: "", stderr: err)
        }
        if executable == "cat", arguments.count == 1, let vmid = PrivilegedBackend.memoryEventsVMID(arguments[0]) {
            let (code, out, err) = await engine.execMemoryEvents(vmid: vmid)
            return CommandResult(exitCode: code, stdout: out, stderr: err)
        }
        if executable == "lsblk", arguments == PrivilegedBackend.lsblkArguments {
            return CommandResult(exitCode: 0, stdout: await engine.execLsblk())
        }
        if executable == "mount", arguments.count == 4, arguments[0].hasPrefix("UUID="), arguments[2] == "-o" {
            let (code, err) = await engine.execMount(uuid: String(arguments[0].dropFirst(5)), mountPoint: arguments[1])
            return CommandResult(exitCode: code, stdout: "", stderr: err)
        }
        if executable == "pvesm", arguments.count == 4, arguments[0] == "set", arguments[2] == "--encryption-key" {
            let (code, err) = await engine.execSetEncryptionKey(storage: arguments[1], value: arguments[3])
            return CommandResult(exitCode: code, stdout: "", stderr: err)
        }
        if executable == "pct", arguments.first == "push", arguments.count >= 4, let vmid = Int(arguments[1]) {
            guard await engine.snapshot().containers[vmid] != nil else {
                return CommandResult(exitCode: 2, stdout: "", stderr: "Configuration file 'nodes/pve1/lxc/\(vmid).conf' does not exist\n")
            }
            return CommandResult(exitCode: 0, stdout: "")
        }
        // A box's set-up (felhom-agent bootstrap): pveum, pvenode cert info, pveversion, pct create.
        if executable == "pveum" {
            let (code, out, err) = await engine.execPveum(arguments)
            return CommandResult(exitCode: code, stdout: out, stderr: err)
        }
        if executable == "pvenode", arguments == PrivilegedBackend.certInfoArguments {
            let (code, out, err) = await engine.execCertInfo()
            return CommandResult(exitCode: code, stdout: out, stderr: err)
        }
        if executable == "pveversion", arguments.isEmpty {
            return CommandResult(exitCode: 0, stdout: PVESimEngine.pveVersionLine + "\n")
        }
        if executable == "pct", arguments.first == "create" {
            let (code, err) = await engine.execPctCreate(arguments)
            return CommandResult(exitCode: code, stdout: "", stderr: err)
        }
        return CommandResult(exitCode: 1, stdout: "", stderr: "\(executable) \(arguments.joined(separator: " ")): not simulated\n")
    }
}
