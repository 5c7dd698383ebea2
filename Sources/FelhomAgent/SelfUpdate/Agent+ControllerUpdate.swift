import FelhomCore
import Foundation
import Proxmox
import Synchronization

/// The backup storage of the latest desired state (read by pre-update backups off the cycle).
final class BackupTarget: Sendable {
    let storage = Mutex<String?>(nil)
}

extension Agent {
    /// The production operations of `controller.update`: the fenced backend for the binary, the
    /// PVE API for the snapshot, the backup runner for the pre-update backup (to the desired
    /// state's backup storage), all through the per-guest queue.
    static func controllerOperations(
        backend: PrivilegedBackend, pve: any PVEAPI, node: String, queue: GuestQueue, backups: AgentBackups?, healer: ControllerHealer?,
        backupStorage: @escaping @Sendable () -> String?, taskTimeout: Duration
    ) -> ControllerUpdater.Operations {
        .init(
            version: { vmid in try await backend.controllerVersion(vmid: vmid) },
            backup: { vmid, label in
                guard let backups, let storage = backupStorage(), !storage.isEmpty else {
                    throw SignedOpError(message: "no backup storage is configured: a controller update needs a pre-update backup")
                }
                let result = await backups.runner.run(vmid: vmid, window: "pre-\(label)", consistency: .crash, target: storage)
                if let failure = result.failure { throw SignedOpError(message: "\(failure)") }
            },
            snapshot: { vmid, name in
                try await queue.run(vmid: vmid) {
                    let upid = try await pve.createSnapshot(node: node, vmid: vmid, name: name, description: "felhom: before a controller update")
                    let status = try await pve.waitTask(upid, timeout: taskTimeout)
                    guard status.succeeded else { throw SignedOpError(message: "snapshot \(name) of \(vmid): \(status.exitStatus ?? "failed")") }
                }
            },
            pull: { vmid, dest in try await queue.run(vmid: vmid) { try await backend.pullController(vmid: vmid, to: dest) } },
            push: { vmid, source in try await queue.run(vmid: vmid) { try await backend.pushController(vmid: vmid, source: source) } },
            install: { vmid in try await queue.run(vmid: vmid) { try await backend.installController(vmid: vmid) } },
            restart: { vmid in try await queue.run(vmid: vmid) { try await backend.restartController(vmid: vmid) } },
            calledSince: { vmid, since in (healer?.lastSeen(vmid: vmid)).map { $0 > since } ?? false })
    }

    /// When the desired state names a controller version: updates the running guests that have a
    /// controller, one at a time, in the background (one pass at a time); events as it goes.
    func controllerUpdateTick(_ spec: DesiredState) {
        backupTarget.storage.withLock { $0 = spec.storagePolicy.backupStorage }
        guard let controllerUpdater, let version = spec.versions["controller"], let tokens = localTokens else { return }
        let guests = spec.guests.filter { $0.runState == .running && !$0.ephemeral && tokens.guests.contains($0.vmid) }.map(\.vmid).sorted()
        let start = state.withLock { s -> Bool in
            guard !s.controllerUpdating else { return false }
            s.controllerUpdating = true
            return true
        }
        guard !guests.isEmpty, start else {
            if start { state.withLock { $0.controllerUpdating = false } }
            return
        }
        Task {
            for vmid in guests {
                let (outcome, events) = await controllerUpdater.update(vmid: vmid, to: version)
                for e in events { await post(e) }
                if case .deferred(let why) = outcome { logger.notice("controller update of \(vmid) deferred: \(why)") }
            }
            state.withLock { $0.controllerUpdating = false }
        }
    }
}
