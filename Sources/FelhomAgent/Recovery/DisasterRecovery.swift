import Crypto
import FelhomCore
import FelhomHubClient
import Foundation
import Proxmox

/// Rebuilding a lost box on a new one (SPEC §3 disaster recovery, §8 zero-knowledge backups):
/// `felhom-agent recover`, run on the replacement box after it enrolled as the lost host and
/// before the agent service starts (which would otherwise provision the desired guests empty).
///
/// 1. The host's recovery bundle from the hub (durable sources only): the escrow envelope and the
///    desired guests.
/// 2. The customer's recovery code opens the envelope — a wrong code changes nothing.
/// 3. The PBS key goes to `backup.key_file` and to the PBS storage (never over another key).
/// 4. Every desired guest is restored from its latest backup on that storage, journaled per guest
///    (`dr-restore`, op `dr-<vmid>`): onto a vmid that is free on this box (a create, which the gate
///    allows); a guest already there that this recovery did not create is left alone — restoring
///    over it needs a signed `guest.restore`. A crash resumes: a finished guest is not restored
///    again, a recorded restore task is waited for, never started twice.
/// 5. Each guest that should run is started; the result says per guest what came back and what
///    did not (a bulk volume is never in a guest's backup: it is reported `not_restored`, never a
///    silent "recovered" with empty media), and goes to the hub as `dr_recovered`.
public struct DisasterRecovery: Sendable {
    public static let kind = "dr-restore"

    let pve: any PVEAPI
    let node: String
    let journal: Journal
    let backend: PrivilegedBackend
    let hub: HubClient
    let hostID: String
    let keyFile: String
    let storage: String
    /// Where restored root disks go.
    let targetStorage: String
    let stateDir: String
    let taskTimeout: Duration
    let log: @Sendable (String) -> Void

    public init(
        pve: any PVEAPI, node: String, journal: Journal, backend: PrivilegedBackend, hub: HubClient, hostID: String, keyFile: String,
        storage: String, targetStorage: String, stateDir: String, taskTimeout: Duration = .seconds(3600),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.pve = pve
        self.node = node
        self.journal = journal
        self.backend = backend
        self.hub = hub
        self.hostID = hostID
        self.keyFile = keyFile
        self.storage = storage
        self.targetStorage = targetStorage
        self.stateDir = stateDir
        self.taskTimeout = taskTimeout
        self.log = log
    }

    /// What came back of one guest.
    public struct GuestResult: Codable, Sendable, Equatable {
        public enum Status: String, Codable, Sendable {
            case restored
            case alreadyRestored = "already_restored"
            case notRestored = "not_restored"
        }
        /// A mount point that did not come back with the guest.
        public struct Missing: Codable, Sendable, Equatable {
            public var key: String
            public var path: String
            public var reason: String
        }
        public var vmid: Int
        public var name: String
        public var status: Status
        public var volid: String?
        public var seconds: Double?
        public var reason: String?
        public var notRestored: [Missing]

        enum CodingKeys: String, CodingKey {
            case vmid, name, status, volid, seconds, reason
            case notRestored = "not_restored"
        }
    }

    /// The whole recovery.
    public struct Report: Codable, Sendable, Equatable {
        public var keyFingerprint: String
        public var guests: [GuestResult]
        /// Every guest came back whole.
        public var complete: Bool { guests.allSatisfy { $0.status != .notRestored && $0.notRestored.isEmpty } }

        enum CodingKeys: String, CodingKey {
            case guests
            case keyFingerprint = "key_fingerprint"
        }
    }

    /// A recovery that could not start (nothing was changed on this box).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// What opens the lost box's escrow envelope.
    public enum Opener: Sendable {
        /// The customer's recovery code (the customer-held tier).
        case code(RecoveryCode)
        /// The operator escrow private key (the operator-managed tier), raw 32 bytes.
        case operatorKeyRaw(Data)

        /// The operator escrow private key (the operator-managed tier).
        public static func operatorKey(_ key: Curve25519.KeyAgreement.PrivateKey) -> Opener { .operatorKeyRaw(key.rawRepresentation) }
    }

    /// Runs (or resumes) the recovery with the customer's code.
    public func run(code: RecoveryCode) async throws -> Report {
        try await run(opening: .code(code))
    }

    /// Runs (or resumes) the recovery, opening the escrow envelope with `opener`.
    public func run(opening opener: Opener) async throws -> Report {
        // 1–2: the bundle and the key; a wrong code or a foreign bundle stops here, nothing changed.
        let bundle: JSONValue
        do { bundle = try await hub.recoveryBundle(hostID: hostID) } catch {
            throw Failure(message: "cannot fetch the recovery bundle of \(hostID) from the hub: \(error)")
        }
        guard bundle["identity"]?["host_id"]?.stringValue == hostID else {
            throw Failure(message: "the hub's recovery bundle is not for host \(hostID)")
        }
        let held = bundle["box_reported"]?["wrapped_escrow_key"] ?? .null
        guard held != .null else { throw Failure(message: "the hub holds no escrow envelope for \(hostID) (escrow init never ran on the lost box)") }
        let envelope = try EscrowEnvelope.decode(held.serialized())
        let wrapping: SymmetricKey
        switch opener {
        case .code(let code): wrapping = try envelope.wrappingKey(code: code)
        case .operatorKeyRaw(let raw):
            guard let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw) else {
                throw EscrowError(.badOperatorKey, "the operator escrow private key is not 32 bytes")
            }
            wrapping = try envelope.wrappingKey(operatorKey: key)
        }
        let raw = try envelope.unwrap(with: wrapping)
        let fingerprint = PBSKey.fingerprint(rawKey: raw)
        let guests: [DesiredState.Guest]
        do {
            guests = try JSONDecoder().decode([DesiredState.Guest].self, from: (bundle["desired"]?["guests"] ?? .array([])).serialized())
        } catch { throw Failure(message: "the recovery bundle's desired guests are unreadable: \(error)") }

        // 3: the key, on disk and on the storage (never over another key).
        try await installKey(raw: raw, fingerprint: fingerprint)
        try keepEscrow(envelope: envelope, wrapping: wrapping)

        // 4–5: the guests.
        let backups = try await latestBackups()
        var results: [GuestResult] = []
        for guest in guests.sorted(by: { $0.vmid < $1.vmid }) {
            results.append(await restore(guest, from: backups[guest.vmid]))
        }
        let report = Report(keyFingerprint: fingerprint, guests: results)
        let summary: [JSONValue] = results.map { r in
            var o: [String: JSONValue] = ["vmid": .int(Int64(r.vmid)), "status": .string(r.status.rawValue)]
            if let v = r.volid { o["volid"] = .string(v) }
            if let why = r.reason { o["reason"] = .string(why) }
            if !r.notRestored.isEmpty { o["not_restored"] = .array(r.notRestored.map { .string("\($0.key) \($0.path)") }) }
            return .object(o)
        }
        do {
            try await hub.postEvent(
                type: report.complete ? "dr_recovered" : "dr_incomplete", severity: report.complete ? .warning : .critical,
                data: ["guests": .array(summary), "complete": .bool(report.complete), "key_fingerprint": .string(fingerprint)])
        } catch { log("cannot post the recovery's outcome: \(error)") }
        // Every guest is back (bulk media may not be, and is reported): the agent may reconcile.
        // A guest that did not come back keeps the hold, so it is never provisioned empty.
        if report.guests.allSatisfy({ $0.status != .notRestored }) {
            try? FileManager.default.removeItem(atPath: stateDir + "/" + Agent.recoveryPendingFile)
        } else {
            log("a guest did not come back: the agent keeps holding back provisioning (run recover again, or remove \(Agent.recoveryPendingFile))")
        }
        return report
    }

    func installKey(raw: [UInt8], fingerprint: String) async throws {
        if let existing = FileManager.default.contents(atPath: keyFile) {
            let had: String
            do { had = try PBSKey(json: existing).fingerprint } catch { throw Failure(message: "'\(keyFile)' exists but is not a PBS key file") }
            guard had == fingerprint else {
                throw Failure(message: "'\(keyFile)' holds another key (\(had)); the recovered key is \(fingerprint): move that file aside first")
            }
        } else {
            do throws(AppendLogError) { try DurableFile.write(Array(PBSKey.keyFileJSON(rawKey: raw)), to: keyFile, mode: 0o600) } catch {
                throw Failure(message: "cannot write '\(keyFile)': \(error.message)")
            }
        }
        let json = String(decoding: FileManager.default.contents(atPath: keyFile) ?? Data(), as: UTF8.self)
        do throws(EscrowError) {
            let current = try await PBSStorageKey.current(storage: storage, pve: pve)
            let set = try await PBSStorageKey.install(
                keyJSON: json, fingerprint: fingerprint, current: current, storage: storage, backend: backend,
                hint: "the storage already encrypts with another key; recover onto a PBS storage without a key")
            if !set { return }
        } catch { throw Failure(message: error.message) }
        log("storage \(storage) now uses the recovered key \(fingerprint)")
    }

    /// The drill keeps working on the new box: the envelope and its wrapping key, as escrow init keeps them.
    func keepEscrow(envelope: EscrowEnvelope, wrapping: SymmetricKey) throws {
        // The same files escrow init keeps (EscrowKeeper owns their names and modes).
        let keeper = EscrowKeeper(
            stateDir: stateDir, keyFile: keyFile, storage: storage, pve: pve, backend: backend, hub: hub, hostID: hostID)
        do throws(EscrowError) { try keeper.makeDir() } catch { throw Failure(message: error.message) }
        do throws(AppendLogError) { try keeper.keep(envelope, wrapping: wrapping) } catch {
            throw Failure(message: "cannot keep the escrow files in '\(stateDir)/escrow': \(error.message)")
        }
    }

    /// The newest backup per guest on the storage.
    func latestBackups() async throws -> [Int: PVEStorageContent] {
        let content: [PVEStorageContent]
        do { content = try await pve.storageContent(node: node, storage: storage, content: "backup", vmid: nil) } catch {
            throw Failure(message: "cannot list the backups on '\(storage)': \(error)")
        }
        var latest: [Int: PVEStorageContent] = [:]
        for c in content {
            guard let vmid = c.vmid else { continue }
            if (latest[vmid]?.ctime ?? Int64.min, latest[vmid]?.volid ?? "") < (c.ctime ?? 0, c.volid) { latest[vmid] = c }
        }
        return latest
    }

    /// One guest: restored, already restored (resumed), or not restored with the reason.
    func restore(_ guest: DesiredState.Guest, from backup: PVEStorageContent?) async -> GuestResult {
        let vmid = guest.vmid
        let op = "dr-\(vmid)"
        let entries = journal.entries(of: op)
        let bulk = guest.mountPoints.filter { $0.bulk || !$0.backup }.map {
            GuestResult.Missing(
                key: $0.key, path: $0.path,
                reason: $0.bulk
                    ? "bulk volume: never in the guest's backups; it comes back empty — restore it from its own copy"
                    : "excluded from backups (backup=false): it comes back empty")
        }
        var result = GuestResult(vmid: vmid, name: guest.name, status: .notRestored, notRestored: [])
        if let done = entries.last, done.step == "done" {
            result.status = .alreadyRestored
            result.volid = done.data["volid"]
            result.notRestored = bulk
            return result
        }
        let recorded = entries.last { $0.step == "restore_started" }?.data["upid"].flatMap { try? UPID(parsing: $0) }
        do {
            let exists = (try? await pve.containerStatus(node: node, vmid: vmid)) != nil
            if exists && recorded == nil {
                result.reason =
                    "a guest \(vmid) exists on this box and this recovery did not create it: restoring over it needs a signed guest.restore"
                return result
            }
            let started = ContinuousClock.now
            var volid = entries.first?.data["volid"]
            if let recorded {
                log("resuming the recovery of \(vmid): waiting for its restore task")
                _ = try await pve.waitTask(recorded, timeout: taskTimeout)
            } else {
                guard let backup else {
                    result.reason = "no backup of \(vmid) on \(storage)"
                    return result
                }
                let decision = Gate.decide(.create, provenance: .desiredState, target: .init(dataBearing: false))
                guard decision == .allowed else { throw GateError(mutation: .create, decision: decision) }
                volid = backup.volid
                if entries.isEmpty {
                    try journal.append(op: op, kind: Self.kind, step: "begin", data: ["vmid": "\(vmid)", "volid": backup.volid])
                }
                var spec = ContainerCreateSpec(vmid: vmid, ostemplate: backup.volid, restore: true)
                spec.storage = targetStorage
                let task = try await pve.createContainer(node: node, spec)
                try journal.append(op: op, kind: Self.kind, step: "restore_started", data: ["vmid": "\(vmid)", "upid": task.description])
                Failpoint.hit("dr.after_restore_started")
                log("restoring \(vmid) (\(guest.name)) from \(backup.volid)")
                _ = try await pve.waitTask(task, timeout: taskTimeout)
            }
            if guest.runState == .running, try await !pve.containerStatus(node: node, vmid: vmid).isRunning {
                _ = try await pve.waitTask(try await pve.startContainer(node: node, vmid: vmid), timeout: taskTimeout)
            }
            let seconds = Double((ContinuousClock.now - started).components.seconds)
            try journal.append(op: op, kind: Self.kind, step: "done", data: ["vmid": "\(vmid)", "volid": volid ?? ""])
            result.status = .restored
            result.volid = volid
            result.seconds = seconds
            result.notRestored = bulk
        } catch {
            result.reason = "restore failed: \(error)"
            try? journal.append(op: op, kind: Self.kind, step: "failed", data: ["vmid": "\(vmid)", "reason": String("\(error)".prefix(300))])
        }
        return result
    }
}
