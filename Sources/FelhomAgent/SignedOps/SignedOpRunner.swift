import FelhomCore
import FelhomSigning
import Foundation
import Proxmox

/// Runs operator-signed ops delivered by the hub: verify (FelhomSigning, pinned signers, durable
/// nonces) → journal → gate → per-guest queue → Proxmox → outcome.
///
/// The op's hub id is its idempotency key: an op the journal shows finished is never run again
/// (its outcome is simply reported again); one found in flight after a crash is completed.
public struct SignedOpRunner: Sendable {
    let verifier: OpVerifier
    let journal: Journal
    let queue: GuestQueue
    let pve: any PVEAPI
    let node: String
    let taskTimeout: Duration
    let log: @Sendable (String) -> Void

    public init(verifier: OpVerifier, journal: Journal, queue: GuestQueue, pve: any PVEAPI, node: String,
                taskTimeout: Duration = .seconds(600), log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.verifier = verifier
        self.journal = journal
        self.queue = queue
        self.pve = pve
        self.node = node
        self.taskTimeout = taskTimeout
        self.log = log
    }

    public static let kind = "signed-op"

    /// The result to report to the hub.
    public struct Outcome: Sendable, Equatable {
        public var applied: Bool
        /// For a rejection: the error code and message (`replay: nonce … was seen before`).
        public var reason: String?
    }

    public func handle(id: String, blob: [UInt8], signature: String) async -> Outcome {
        let entries = journal.entries(of: id)
        if let last = entries.last, last.isTerminal {
            return Outcome(applied: last.step == "done", reason: last.data["reason"])
        }
        let op: OpBlob
        if let begin = entries.first(where: { $0.step == "begin" }), let text = begin.data["blob"],
            let parsed = try? OpBlob(parsing: Array(text.utf8))
        {
            // Verified before the crash (its nonce is spent): finish it.
            op = parsed
            log("resuming signed op \(id) (\(op.op.rawValue))")
        } else {
            do {
                op = try verifier.verify(blob: blob, signature: signature).op
            } catch {
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
            try await execute(op)
            try journal.append(op: id, kind: Self.kind, step: "done", data: ["op": op.op.rawValue])
            log("signed op \(id) applied: \(op.op.rawValue) \(op.guestID.map { "guest \($0)" } ?? "")")
            return Outcome(applied: true, reason: nil)
        } catch {
            let reason = "failed: \(error)"
            try? journal.append(op: id, kind: Self.kind, step: "failed", data: ["reason": String(reason.prefix(500))])
            return Outcome(applied: false, reason: reason)
        }
    }

    func execute(_ op: OpBlob) async throws {
        let mutation: Gate.Mutation
        switch op.op {
        case .guestDestroy: mutation = .destroy
        case .guestRollback: mutation = .rollback
        case .guestRestore: mutation = .restoreOver
        case .diskDecommission: mutation = .diskDecommission
        case .agentRollback: throw SignedOpError(message: "agent.rollback is not supported by this agent version")
        }
        guard Gate.decide(mutation, provenance: .signedOp, target: .init(dataBearing: true), signatureVerified: true) == .allowed else {
            throw SignedOpError(message: "the gate refused \(op.op.rawValue)")
        }
        guard op.op != .diskDecommission else { throw SignedOpError(message: "disk.decommission is not supported by this agent version") }
        guard let g = op.guestID, let vmid = Int(g) else { throw SignedOpError(message: "target.guest_id is not a vmid") }
        let node = self.node, pve = self.pve, timeout = taskTimeout
        try await queue.run(vmid: vmid) {
            switch op.op {
            case .guestDestroy:
                guard let status = try? await pve.containerStatus(node: node, vmid: vmid) else { return }  // already gone: done
                if status.isRunning {
                    _ = try await pve.waitTask(try await pve.stopContainer(node: node, vmid: vmid), timeout: timeout)
                }
                _ = try await pve.waitTask(try await pve.destroyContainer(node: node, vmid: vmid, purge: true, force: true), timeout: timeout)
            case .guestRollback:
                guard let snap = op.params["snapshot"]?.stringValue else { throw SignedOpError(message: "params.snapshot missing") }
                _ = try await pve.waitTask(try await pve.rollbackSnapshot(node: node, vmid: vmid, name: snap, start: false), timeout: timeout)
            case .guestRestore:
                guard let backup = op.params["backup"]?.stringValue else { throw SignedOpError(message: "params.backup missing") }
                var spec = ContainerCreateSpec(vmid: vmid, ostemplate: backup, restore: true)
                spec.force = true
                _ = try await pve.waitTask(try await pve.createContainer(node: node, spec), timeout: timeout)
            default:
                break
            }
        }
    }
}

public struct SignedOpError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
