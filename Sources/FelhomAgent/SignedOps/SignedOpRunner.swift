import FelhomCore
import FelhomSigning
import Foundation
import Proxmox
import Synchronization

/// Runs operator-signed ops delivered by the hub: verify (FelhomSigning, pinned signers, durable
/// nonces) → journal → gate → per-guest queue → Proxmox → outcome.
///
/// The op's hub id is its idempotency key: an op the journal shows finished is never run again
/// (its outcome is simply reported again); one found in flight after a crash is completed.
public struct SignedOpRunner: Sendable {
    /// The verifier in use, shared by copies of the runner; its signers are replaced when the
    /// agent's `signers_file` changes.
    final class VerifierSlot: Sendable {
        let value: Mutex<OpVerifier>
        init(_ verifier: OpVerifier) { value = Mutex(verifier) }
    }
    let slot: VerifierSlot
    var verifier: OpVerifier { slot.value.withLock { $0 } }
    let journal: Journal
    let queue: GuestQueue
    let pve: any PVEAPI
    let node: String
    let taskTimeout: Duration
    /// The storage manifest, for `disk.decommission` (nil: the op is refused).
    let storage: StorageKeeper?
    /// Volume snapshots, for `volume.restore` (nil: the op is refused).
    let volumeRestore: VolumeRestoreOver?
    /// Where `agent.rollback` and `controller.rollback` record their permission (nil: refused).
    let rollbacks: RollbackAuthorizations?
    let log: @Sendable (String) -> Void

    public init(
        verifier: OpVerifier, journal: Journal, queue: GuestQueue, pve: any PVEAPI, node: String,
        taskTimeout: Duration = .seconds(600), storage: StorageKeeper? = nil, volumeRestore: VolumeRestoreOver? = nil,
        rollbacks: RollbackAuthorizations? = nil, log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.rollbacks = rollbacks
        self.storage = storage
        self.volumeRestore = volumeRestore
        self.slot = VerifierSlot(verifier)
        self.journal = journal
        self.queue = queue
        self.pve = pve
        self.node = node
        self.taskTimeout = taskTimeout
        self.log = log
    }

    public static let kind = "signed-op"

    /// The keys ops are verified against from now on (the agent's `signers_file` was changed).
    public func replaceSigners(_ signers: [PinnedSigner]) {
        slot.value.withLock { v in
            v = OpVerifier(signers: signers, hostID: v.hostID, nonces: v.nonces, clock: v.clock, policy: v.policy)
        }
    }

    /// The result to report to the hub.
    public struct Outcome: Sendable, Equatable {
        public var applied: Bool
        /// For a rejection: the error code and message (`replay: nonce … was seen before`).
        public var reason: String?
        /// Neither applied nor rejected: signed by a key this box does not pin (yet). Nothing is
        /// journaled and no nonce is spent; the op waits on the hub until the key is added to
        /// `signers_file` or the op expires.
        public var held = false
        /// The signing key's fingerprint, for a held op.
        public var unpinnedKey: String?

        public init(applied: Bool, reason: String?, held: Bool = false, unpinnedKey: String? = nil) {
            self.applied = applied
            self.reason = reason
            self.held = held
            self.unpinnedKey = unpinnedKey
        }
    }

    /// Verifies (or, after a crash, resumes) and runs one delivered op. `desired` is the agent's
    /// current desired state: a guest still in it is never destroyed (the hub refuses to queue
    /// that, and the agent does not trust the hub to have checked).
    public func handle(id: String, blob: [UInt8], signature: String, desired: DesiredState? = nil) async -> Outcome {
        let entries = journal.entries(of: id)
        if let last = entries.last, last.isTerminal {
            return Outcome(applied: last.step == "done", reason: last.data["reason"])
        }
        let op: OpBlob
        if let begin = entries.first(where: { $0.step == "begin" }), let text = begin.data["blob"],
            let parsed = try? OpBlob(parsing: Array(text.utf8))
        {
            // Verified before the crash (its nonce is spent): finish it, within its time window.
            op = parsed
            log("resuming signed op \(id) (\(op.op.rawValue))")
        } else {
            let verifier = self.verifier
            do {
                // The op's id owns the nonce: killed before `begin` below, it is verified again and resumes.
                op = try verifier.verify(blob: blob, signature: signature, owner: id).op
            } catch {
                // A valid signature by a key this box does not pin may be the operator's new key
                // whose line has not reached signers_file yet: hold it rather than consume it.
                if error.code == .unknownSigner, let sig = try? SSHSignature(armored: signature),
                    !verifier.signers.contains(where: { $0.key == sig.publicKey }),
                    (try? sig.verify(message: blob, requireUserPresence: verifier.policy.requireUserPresence)) != nil
                {
                    log("signed op \(id) held: key \(sig.publicKey.fingerprint) is not in signers_file")
                    return Outcome(
                        applied: false, reason: "unknown_signer: key \(sig.publicKey.fingerprint) is not pinned", held: true,
                        unpinnedKey: sig.publicKey.fingerprint)
                }
                let reason = "\(error.code): \(error.message)"
                try? journal.append(op: id, kind: Self.kind, step: "failed", data: ["reason": reason])
                log("signed op \(id) rejected: \(reason)")
                return Outcome(applied: false, reason: reason)
            }
            do {
                try journal.append(op: id, kind: Self.kind, step: "begin", data: ["blob": String(decoding: blob, as: UTF8.self)])
            } catch {
                return Outcome(applied: false, reason: "journal: \(error)")
            }
        }
        do {
            try await execute(op, id: id, desired: desired)
            try journal.append(op: id, kind: Self.kind, step: "done", data: ["op": op.op.rawValue])
            log("signed op \(id) applied: \(op.op.rawValue) \(op.guestID.map { "guest \($0)" } ?? "")")
            return Outcome(applied: true, reason: nil)
        } catch {
            let reason = "failed: \(error)"
            try? journal.append(op: id, kind: Self.kind, step: "failed", data: ["reason": String(reason.prefix(500))])
            return Outcome(applied: false, reason: reason)
        }
    }

    func execute(_ op: OpBlob, id: String, desired: DesiredState?) async throws {
        let mutation: Gate.Mutation
        switch op.op {
        case .guestDestroy: mutation = .destroy
        case .guestRollback: mutation = .rollback
        case .guestRestore, .volumeRestore: mutation = .restoreOver
        case .diskDecommission: mutation = .diskDecommission
        case .agentRollback, .controllerRollback:
            // Not a mutation: the permission to install exactly this older release when the
            // desired state names it (docs/updates.md). The downgrade itself goes through self-update.
            guard let rollbacks else { throw SignedOpError(message: "\(op.op.rawValue): self-update is not configured on this agent") }
            guard let version = op.params["version"]?.stringValue else { throw SignedOpError(message: "params.version missing") }
            try verifier.checkTimeWindow(op)
            try rollbacks.authorize(op.op == .agentRollback ? .agent : .controller, version: version)
            log("\(op.op.rawValue): installing \(version) is allowed once the desired state names it")
            return
        }
        let decision = Gate.decide(mutation, provenance: .signedOp, target: .init(dataBearing: true), signatureVerified: true)
        guard decision == .allowed else { throw GateError(mutation: mutation, decision: decision) }
        if op.op == .diskDecommission {
            guard let storage else {
                throw SignedOpError(message: "disk.decommission: this agent has no storage manifest (storage_manifest is off in its config)")
            }
            guard let uuid = op.params["disk_uuid"]?.stringValue else { throw SignedOpError(message: "params.disk_uuid missing") }
            try verifier.checkTimeWindow(op)
            let journal = self.journal
            try await storage.decommission(uuid: uuid) { step, data in
                try journal.append(op: id, kind: Self.kind, step: step, data: data)
            }
            return
        }
        guard let g = op.guestID, let vmid = Int(g) else { throw SignedOpError(message: "target.guest_id is not a vmid") }
        if op.op == .guestDestroy, let desired, desired.guests.contains(where: { $0.vmid == vmid }) {
            throw SignedOpError(
                message:
                    "guest \(vmid) is still in this host's desired state: destroying it would rebuild it empty; remove it from the desired state and publish first"
            )
        }
        let node = self.node
        let pve = self.pve
        let timeout = taskTimeout
        if op.op == .volumeRestore {
            guard let volumeRestore else {
                throw SignedOpError(message: "volume.restore: volume snapshots are not configured on this box (snapshots.s3.*)")
            }
            guard let volume = op.params["volume_id"]?.stringValue, let snapshot = op.params["snapshot_id"]?.stringValue else {
                throw SignedOpError(message: "params.volume_id and params.snapshot_id are required")
            }
            let journal = self.journal
            // Within its window until the download is verified; after that the op finishes
            // (a big volume may take longer than the window to download).
            if !journal.entries(of: id).contains(where: { $0.step == "downloaded" }) { try verifier.checkTimeWindow(op) }
            try await queue.run(vmid: vmid) {
                try await volumeRestore.run(
                    op: id, vmid: vmid, volumeID: volume, snapshotID: snapshot, pve: pve, node: node,
                    step: { name, data in try journal.append(op: id, kind: Self.kind, step: name, data: data) },
                    done: { name in journal.entries(of: id).contains { $0.step == name } },
                    stopGuest: {
                        if let upid = self.recordedTask(id: id, step: "stop_started") {
                            _ = try await pve.waitTask(upid, timeout: timeout)
                        } else if try await pve.containerStatus(node: node, vmid: vmid).isRunning {
                            let upid = try await pve.stopContainer(node: node, vmid: vmid)
                            try journal.append(op: id, kind: Self.kind, step: "stop_started", data: ["upid": upid.description])
                            _ = try await pve.waitTask(upid, timeout: timeout)
                        }
                    })
            }
            return
        }
        try await queue.run(vmid: vmid) {
            switch op.op {
            case .guestDestroy:
                if try await self.isGone(vmid) {
                    // A crash after the destroy task: wait for it if recorded; gone is done.
                    if let upid = self.recordedTask(id: id, step: "destroy_started") { _ = try? await pve.waitTask(upid, timeout: timeout) }
                    return
                }
                let status = try await pve.containerStatus(node: node, vmid: vmid)
                if status.isRunning {
                    try await self.task(id: id, op: op, step: "stop_started") { try await pve.stopContainer(node: node, vmid: vmid) }
                }
                try await self.task(id: id, op: op, step: "destroy_started") {
                    try await pve.destroyContainer(node: node, vmid: vmid, purge: true, force: true)
                }
                // Applied only once PVE says the guest does not exist.
                guard try await self.isGone(vmid) else {
                    throw SignedOpError(message: "the destroy task finished but guest \(vmid) still exists")
                }
            case .guestRollback:
                guard let snap = op.params["snapshot"]?.stringValue else { throw SignedOpError(message: "params.snapshot missing") }
                try await self.task(id: id, op: op, step: "rollback_started") {
                    try await pve.rollbackSnapshot(node: node, vmid: vmid, name: snap, start: false)
                }
            case .guestRestore:
                guard let backup = op.params["backup"]?.stringValue else { throw SignedOpError(message: "params.backup missing") }
                let restoreRecorded = self.recordedTask(id: id, step: "restore_started") != nil
                if !restoreRecorded, try await !self.isGone(vmid) {
                    // PVE's restore over an existing guest destroys all of its volumes, also those
                    // the backup does not hold: refuse rather than lose them.
                    let config = try await pve.containerConfig(node: node, vmid: vmid, current: false)
                    let lost = Self.volumesNotInBackups(config)
                    guard lost.isEmpty else {
                        throw SignedOpError(
                            message: "restoring over guest \(vmid) would destroy volumes that are not in its backups: "
                                + lost.map { "\($0.key) (\($0.volume))" }.joined(separator: ", ")
                                + "; move them to another guest or detach them first")
                    }
                    // PVE refuses to overwrite a running container: stop it first, in this queue slot.
                    if try await pve.containerStatus(node: node, vmid: vmid).isRunning {
                        try await self.task(id: id, op: op, step: "stop_started") { try await pve.stopContainer(node: node, vmid: vmid) }
                    }
                }
                var spec = ContainerCreateSpec(vmid: vmid, ostemplate: backup, restore: true)
                spec.force = true
                try await self.task(id: id, op: op, step: "restore_started") { try await pve.createContainer(node: node, spec) }
            default:
                break
            }
        }
    }

    /// One PVE task of an op, journaled: a task already recorded for `step` (submitted before a
    /// crash) is waited for, never submitted again; a new one is submitted only inside the op's
    /// time window, and its UPID is journaled before it is waited for.
    func task(id: String, op: OpBlob, step: String, submit: () async throws -> UPID) async throws {
        if let upid = recordedTask(id: id, step: step) {
            _ = try await pve.waitTask(upid, timeout: taskTimeout)
            return
        }
        try verifier.checkTimeWindow(op)
        let upid = try await submit()
        try journal.append(op: id, kind: Self.kind, step: step, data: ["upid": upid.description])
        _ = try await pve.waitTask(upid, timeout: taskTimeout)
    }

    func recordedTask(id: String, step: String) -> UPID? {
        journal.entries(of: id).last(where: { $0.step == step })?.data["upid"].flatMap { try? UPID(parsing: $0) }
    }

    /// True only on PVE's definite "does not exist" (``PVEAPI/containerExists(node:vmid:)``).
    func isGone(_ vmid: Int) async throws -> Bool {
        try await !pve.containerExists(node: node, vmid: vmid)
    }

    /// Volumes a backup does not hold (mount points without `backup=1`, `unusedN` volumes, and any
    /// mount point that does not parse): a restore over the guest would destroy them. Bind and
    /// device mounts (a path, not a volume) are not destroyed by PVE.
    public static func volumesNotInBackups(_ config: PVEGuestConfig) -> [(key: String, volume: String)] {
        var out: [(key: String, volume: String)] = []
        for (key, value) in config.raw {
            guard let text = value.stringValue else { continue }
            if key.hasPrefix("unused"), Int(key.dropFirst(6)) != nil {
                out.append((key, text))
            } else if key.hasPrefix("mp"), Int(key.dropFirst(2)) != nil {
                guard let mp = try? MountPoint(parsing: text) else {
                    out.append((key, text))
                    continue
                }
                if !mp.isBindOrDevice && !mp.includedInBackup { out.append((key, mp.volume)) }
            }
        }
        return out.sorted { $0.key < $1.key }
    }
}

public struct SignedOpError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
