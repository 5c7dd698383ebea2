import Crypto
import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import Synchronization

/// `POST /rollback` of the local API: a guest's controller hands in an operator-signed
/// `guest.rollback` op for **its own guest** (the operator signed it with `felhom sign`; the
/// controller only carries it). Nothing here trusts the controller: the op goes through the same
/// pipeline as one the hub delivers (``SignedOpRunner``: pinned signers, host target, time
/// window, durable nonce, journal, gate, per-guest queue). Refused before anything runs: an op
/// that is not `guest.rollback`, one for another guest (403), one already used here (409
/// `replayed`), a bad or unpinned signature, an expired op or a spent nonce (403).
///
/// The answer comes once the op is verified and journaled (202 `running`) — the rollback itself
/// stops the caller's guest, so the controller reads the outcome afterwards with
/// `GET /rollback/status?id=ID`. Each outcome goes to the hub as an event (`guest_rolled_back`
/// or `op_refused`).
public final class LocalRollbacks: Sendable {
    let runner: SignedOpRunner
    let hub: HubClient?
    let logger: Logger
    let outcomes = Mutex<[String: SignedOpRunner.Outcome]>([:])

    init(runner: SignedOpRunner, hub: HubClient?, logger: Logger) {
        self.runner = runner
        self.hub = hub
        self.logger = logger
    }

    /// The op id: `lr-VMID-` and the first 16 hex digits of the blob's SHA-256 (the same signed
    /// op always gets the same id, so a replay is recognized from the journal).
    static func opID(vmid: Int, blob: [UInt8]) -> String {
        "lr-\(vmid)-" + SHA256.hash(data: blob).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// Verifies and starts the rollback `blob` + `signature` asks for, on behalf of guest `vmid`.
    public func start(vmid: Int, blob: [UInt8], signature: String) async throws(LocalAPIError) -> BackupRun {
        let op: OpBlob
        do { op = try OpBlob(parsing: blob) } catch {
            throw LocalAPIError(.badRequest, "blob is not a valid signed op: \(error)")
        }
        guard op.op == .guestRollback else {
            throw LocalAPIError(.forbidden, "only guest.rollback may be handed in through the local API, not \(op.op.rawValue)")
        }
        guard op.guestID == String(vmid) else { throw LocalAPIError(.forbidden, "a guest may only roll back itself") }
        let id = Self.opID(vmid: vmid, blob: blob)
        guard runner.journal.entries(of: id).isEmpty else {
            throw LocalAPIError(.conflict, "replayed: this signed op was already handed in (\(id)); a rollback runs once")
        }
        let runner = self.runner
        let work = Task {
            let outcome = await runner.handle(id: id, blob: blob, signature: signature)
            self.outcomes.withLock { $0[id] = outcome }
            await self.report(outcome, id: id, vmid: vmid, op: op)
            return outcome
        }
        // Answer once verified and journaled (`begin`), or with the refusal.
        for _ in 0..<1000 {
            if let outcome = outcomes.withLock({ $0[id] }) {
                guard outcome.applied else { throw Self.refusal(outcome) }
                return BackupRun(id: id, status: .done)
            }
            if runner.journal.entries(of: id).contains(where: { $0.step == "begin" }) { return BackupRun(id: id, status: .running) }
            try? await Task.sleep(for: .milliseconds(10))
        }
        _ = work  // still verifying after 10 s (a slow disk): it finishes on its own
        return BackupRun(id: id, status: .running)
    }

    /// A refused op as the local API answers it: a spent nonce is `replayed` (409), the rest 403.
    static func refusal(_ outcome: SignedOpRunner.Outcome) -> LocalAPIError {
        let reason = outcome.reason ?? "refused"
        if reason.hasPrefix("replay") { return LocalAPIError(.conflict, "replayed: \(reason)") }
        if outcome.held { return LocalAPIError(.forbidden, "the op is signed by a key this box does not pin: \(reason)") }
        return LocalAPIError(.forbidden, "the signed op was refused: \(reason)")
    }

    /// The rollback `id` of guest `vmid`, from the journal (only its own: `lr-VMID-…`).
    public func status(vmid: Int, id: String) throws(LocalAPIError) -> BackupRun {
        guard id.hasPrefix("lr-\(vmid)-") else { throw LocalAPIError(.notFound, "no rollback \(id) of this guest") }
        let entries = runner.journal.entries(of: id)
        guard let last = entries.last else { throw LocalAPIError(.notFound, "no rollback \(id) of this guest") }
        var run = BackupRun(id: id, status: .running)
        if last.step == "done" { run.status = .done }
        if last.step == "failed" {
            run.status = .failed
            run.reason = last.data["reason"].map { String($0.prefix(300)) }
        }
        return run
    }

    func report(_ outcome: SignedOpRunner.Outcome, id: String, vmid: Int, op: OpBlob) async {
        guard let hub else { return }
        var data: [String: JSONValue] = ["vmid": .int(Int64(vmid)), "op_id": .string(id), "op": .string(op.op.rawValue)]
        if let snap = op.params["snapshot"]?.stringValue { data["snapshot"] = .string(snap) }
        let type: String
        if outcome.applied {
            type = "guest_rolled_back"
            data["source"] = .string("local API (operator-signed op handed in by the guest's controller)")
        } else {
            type = "op_refused"
            data["reason"] = .string(Agent.reportable(outcome.reason ?? "refused"))
        }
        do { try await hub.postEvent(type: type, severity: .warning, data: .object(data)) } catch {
            logger.warning("cannot post \(type) for \(id): \(error)")
        }
    }
}
