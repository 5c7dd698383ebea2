import FelhomAPI
import FelhomCore
import FelhomSigning
import Foundation
import SQLKit

/// The signed-op queue (SPEC §3): destructive ops wait here for the operator's SSH signature.
///
/// The hub builds the canonical blob and stores it and its signature as opaque text. It checks an
/// uploaded signature against the registered operator keys only to give early feedback; the agent
/// verifies again against its own pinned keys and is the authority (SPEC §1 rule 2: the hub holds
/// no signing key). Life cycle: `pending_signature → signed → delivered → applied | rejected`, and
/// `expired` for any unfinished op past its `expires_at`.
/// Where a queued op is in its life: `pending_signature → signed → delivered → applied | rejected`,
/// and `expired` for any unfinished op past its `expires_at`.
extension SignedOpStatus {
    /// A stored value; an unknown one is a damaged row, not a guess.
    init(stored: String) throws {
        guard let status = Self(rawValue: stored) else { throw StoreError(code: .query, message: "signed op with unknown status '\(stored)'") }
        self = status
    }
}

extension Hub {
    public static let signedOpStatuses = SignedOpStatus.allCases.map(\.rawValue)

    /// Registers an operator's SSH public key (`role`: `operational` or `recovery`).
    public func registerOperatorKey(publicKey: String, role: String?, name: String?, by principal: Principal) async throws -> OperatorKeyView {
        guard principal == .operator else { throw HubError.forbidden("register operator keys") }
        let key: SSHPublicKey
        do { key = try SSHPublicKey(openSSHLine: publicKey) } catch {
            throw HubError.badRequest("not an accepted OpenSSH public key: \(error.message)", path: "$.public_key")
        }
        let role = role ?? "operational"
        guard ["operational", "recovery"].contains(role) else { throw HubError.badRequest("must be operational or recovery", path: "$.role") }
        let comment = publicKey.split(separator: " ").dropFirst(2).joined(separator: " ")
        let name = name ?? (comment.isEmpty ? key.fingerprint : comment)
        try Validate.text(name, "$.name", max: 200)
        let view = OperatorKeyView(
            id: Ids.make("opk"), name: name, role: role, fingerprint: key.fingerprint, publicKey: key.openSSHLine,
            createdAt: Timestamp(secondsSince1970: now))
        try await store.withDB { db in
            if try await KeysTable.operatorKeyExists(fingerprint: view.fingerprint, in: db) {
                throw HubError(.conflict, "conflict", "key \(view.fingerprint) is already registered")
            }
            try await KeysTable.insertOperatorKey(
                id: view.id, publicKey: view.publicKey, fingerprint: view.fingerprint, role: role, name: name,
                at: view.createdAt.secondsSince1970, in: db)
        }
        return view
    }

    /// Removes an operator signing key from the hub (kept, revoked, for the record): the hub no
    /// longer accepts its signatures and `felhom sign` no longer offers it. Agents trust their own
    /// `signers_file`: remove the key there too. Records `operator_key_removed`.
    public func removeOperatorKey(id: String, by principal: Principal) async throws -> OperatorKeyView {
        guard principal == .operator else { throw HubError.forbidden("remove operator keys") }
        guard let view = try await operatorKeys(by: principal).first(where: { $0.id == id }) else { throw HubError.notFound("operator key \(id)") }
        let now = self.now
        try await store.transaction { db in
            guard try await KeysTable.revokeOperatorKey(id: id, at: now, in: db) != nil else { throw HubError.notFound("operator key \(id)") }
            try await recordEvent(
                "operator_key_removed", severity: .warning, customerID: nil,
                data: ["key_id": .string(view.fingerprint), "name": .string(view.name), "role": .string(view.role)], at: now, in: db)
        }
        logger.notice("operator key removed", metadata: ["fingerprint": "\(view.fingerprint)", "role": "\(view.role)"])
        return view
    }

    /// Cancels a queued op before it is delivered to its host (operator). A delivered op is in the
    /// agent's hands (409); a finished one cannot change. Records `op_cancelled`.
    public func cancelSignedOp(_ id: String, by principal: Principal) async throws -> SignedOpView {
        guard principal == .operator else { throw HubError.forbidden("cancel signed ops (operator only)") }
        let view = try await signedOp(id, by: principal)
        let now = self.now
        let cancelled = try await store.transaction { db -> Bool in
            guard try await SignedOpsTable.cancel(id: id, at: now, in: db) else { return false }
            try await recordEvent(
                "op_cancelled", hostID: view.hostID, customerID: view.customerID,
                data: ["op_id": .string(id), "op": .string(view.op), "vmid": view.guestID.map { .string($0) } ?? .null], at: now, in: db)
            return true
        }
        guard cancelled else {
            throw HubError(.conflict, "not_cancellable", "op \(id) is \(view.status.rawValue): only ops not yet delivered can be cancelled")
        }
        generations.notify(hostID: view.hostID)
        return try await signedOp(id, by: principal)
    }

    public func operatorKeys(by principal: Principal) async throws -> [OperatorKeyView] {
        guard principal == .operator else { throw HubError.forbidden("list operator keys") }
        return try await store.withDB { db in
            try await KeysTable.activeOperatorKeys(in: db).map {
                OperatorKeyView(
                    id: try $0.decode(column: "id", as: String.self), name: try $0.decode(column: "name", as: String.self),
                    role: try $0.decode(column: "role", as: String.self), fingerprint: try $0.decode(column: "fingerprint", as: String.self),
                    publicKey: try $0.decode(column: "public_key", as: String.self),
                    createdAt: Timestamp(secondsSince1970: try $0.decode(column: "created_at", as: Int64.self)))
            }
        }
    }

    /// Queues an op for signing. `guest_id` is the guest's vmid on the host.
    public func createSignedOp(_ r: NewSignedOp, by principal: Principal) async throws -> SignedOpView {
        guard principal == .operator else { throw HubError.forbidden("queue signed ops (operator only)") }
        guard let op = OpBlob.Op(rawValue: r.op) else {
            throw HubError.badRequest("unknown op; one of \(OpBlob.Op.allCases.map(\.rawValue).joined(separator: ", "))", path: "$.op")
        }
        guard let host = try await hostRow(r.hostID) else { throw HubError(.notFound, "not_found", "host \(r.hostID) not found", path: "$.host_id") }
        if let g = r.guestID, Int(g).map({ (100...999_999_999).contains($0) }) != true {
            throw HubError.badRequest("must be the guest's vmid (100…999999999)", path: "$.guest_id")
        }
        if op == .guestDestroy, let g = r.guestID, let vmid = Int(g) {
            // Destroying a guest that is still desired destroys its data and the agent rebuilds it empty.
            let desiredView = try await desired(hostID: r.hostID, by: principal)
            for (which, spec) in [("published", desiredView.spec), ("draft", desiredView.draft)]
            where spec?.guests.contains(where: { $0.vmid == vmid }) == true {
                throw HubError(
                    .conflict, "conflict",
                    "guest \(vmid) is still in the \(which) desired state of host \(r.hostID): remove it from the desired state and publish first, then queue guest.destroy"
                )
            }
        }
        if op == .diskDecommission, let uuid = r.params?["disk_uuid"]?.stringValue {
            // Only a disk the box reported can be decommissioned (the agent checks again, and
            // refuses while guest volumes live on it).
            let body = try await store.withDB { db in try await ReportsTable.latestHostReport(hostID: r.hostID, in: db)?.body }
            let targets = body.flatMap { try? HostReport.decode(Data($0.utf8)) }?.storageTargets ?? []
            guard let disk = targets.first(where: { $0.uuid.lowercased() == uuid.lowercased() }) else {
                throw HubError(
                    .conflict, "unknown_disk", "host \(r.hostID) has not reported a disk with filesystem UUID \(uuid)", path: "$.params.disk_uuid")
            }
            guard disk.state != .decommissioned else {
                throw HubError(.conflict, "conflict", "disk \(uuid) of host \(r.hostID) is already decommissioned", path: "$.params.disk_uuid")
            }
        }
        if op == .volumeRestore, let volume = r.params?["volume_id"]?.stringValue, let snapshot = r.params?["snapshot_id"]?.stringValue {
            // Only a complete snapshot the box recorded (the agent checks again, and verifies
            // every byte before the volume is touched).
            let records = try await store.withDB { db in try await VolumeSnapshotsTable.list(hostID: r.hostID, volumeID: volume, in: db) }
            guard records.contains(where: { $0.snapshotID == snapshot && $0.state == "complete" }) else {
                throw HubError(
                    .conflict, "unknown_snapshot", "host \(r.hostID) has no complete snapshot \(snapshot) of volume \(volume)",
                    path: "$.params.snapshot_id")
            }
        }
        let ttl = r.ttlSeconds ?? 3600
        guard (60...86400).contains(ttl) else { throw HubError.badRequest("must be 60…86400 seconds", path: "$.ttl_seconds") }
        let keyID: String
        if let key = r.keyID {
            // A key the hub does not know cannot sign anything the hub will accept: say so now.
            guard try await operatorKeys(by: principal).contains(where: { $0.fingerprint == key }) else {
                throw HubError(
                    .conflict, "key_id_unknown", "no registered operator key has fingerprint '\(key)' (GET /api/v1/operator-keys lists them)",
                    path: "$.key_id")
            }
            keyID = key
        } else {
            let keys = try await operatorKeys(by: principal).filter { $0.role == "operational" }
            guard keys.count == 1 else {
                // The request is well formed; the hub's key set decides (409, like any state conflict).
                throw HubError(
                    .conflict, "key_id_required",
                    keys.isEmpty ? "register an operator key first (POST /api/v1/operator-keys)" : "several operator keys: say which with key_id",
                    path: "$.key_id")
            }
            keyID = keys[0].fingerprint
        }
        let blob: OpBlob
        let bytes: [UInt8]
        do {
            blob = try OpBlob.new(
                op: op, hostID: r.hostID, guestID: r.guestID, params: r.params ?? [:], ttl: TimeInterval(ttl), keyID: keyID,
                now: Date(timeIntervalSince1970: TimeInterval(now)))
            bytes = try blob.canonicalBytes()
        } catch let error as OpBlobError {
            throw HubError.badRequest(error.message, path: "$." + (error.field == "target.guest_id" ? "guest_id" : error.field))
        }
        let id = Ids.make("sop")
        let created = now
        try await store.transaction { db in
            try await SignedOpsTable.insert(
                id: id, hostID: r.hostID, guestID: r.guestID, customerID: host.customerID, op: op.rawValue,
                blob: String(decoding: bytes, as: UTF8.self),
                nonce: blob.nonce, expiresAt: Int64(blob.expiresAt.timeIntervalSince1970), createdAt: created, in: db)
        }
        return try await signedOp(id, by: principal)
    }

    /// Ops as the API shows them (unfinished ops past their expiry are marked `expired` first).
    /// Marks ops past their expiry `expired`, each with an `op_expired` event, in one transaction
    /// (before any listing, and on every checker pass). Returns how many expired.
    @discardableResult
    public func expireSignedOps() async throws -> Int {
        let now = self.now
        return try await store.transaction { db in
            let expired = try await SignedOpsTable.expire(now: now, in: db)
            for op in expired {
                try await recordEvent(
                    "op_expired", severity: .warning, hostID: op.hostID, customerID: op.customerID,
                    data: ["op_id": .string(op.id), "op": .string(op.op), "vmid": op.guestID.map { .string($0) } ?? .null], at: now, in: db)
            }
            return expired.count
        }
    }

    func signedOpViews(_ filter: SignedOpsTable.Filter) async throws -> [SignedOpView] {
        let now = self.now
        try await expireSignedOps()
        let rows = try await store.withDB { db in try await SignedOpsTable.list(filter, now: now, in: db) }
        // The latest report of each host in the list: guest names, and the volumes at risk of a restore.
        let listedHosts = Set(try rows.map { try $0.decode(column: "host_id", as: String.self) })
        var reports: [String: HostReport] = [:]
        for host in listedHosts {
            let body = try await store.withDB { db in try await ReportsTable.latestHostReport(hostID: host, in: db)?.body }
            reports[host] = body.flatMap { try? HostReport.decode(Data($0.utf8)) }
        }
        var views = try rows.map { r in
            let blobText = try r.decode(column: "blob", as: String.self)
            let parsed = try? OpBlob(parsing: Array(blobText.utf8))
            let hostName = try r.decode(column: "host_name", as: String.self)
            let customerName = try r.decode(column: "customer_name", as: String.self)
            var summary = parsed?.plainDescription ?? "unreadable blob"
            summary += " (customer \(customerName), host \(hostName))"
            return SignedOpView(
                id: try r.decode(column: "id", as: String.self), hostID: try r.decode(column: "host_id", as: String.self), hostName: hostName,
                customerID: try r.decode(column: "customer_id", as: String.self), customerName: customerName,
                guestID: try r.decode(column: "guest_id", as: String?.self), op: try r.decode(column: "op", as: String.self), summary: summary,
                blob: blobText, status: try SignedOpStatus(stored: r.decode(column: "status", as: String.self)),
                signature: try r.decode(column: "signature", as: String?.self),
                signer: try r.decode(column: "signer", as: String?.self), reason: try r.decode(column: "reason", as: String?.self),
                expiresAt: Timestamp(secondsSince1970: try r.decode(column: "expires_at", as: Int64.self)),
                createdAt: Timestamp(secondsSince1970: try r.decode(column: "created_at", as: Int64.self)),
                volumesNotInBackups: Self.volumesAtRisk(parsed, report: reports[try r.decode(column: "host_id", as: String.self)]))
        }
        // Flag in-flight ops that share host, guest and operation with another in-flight op.
        let open = SignedOpStatus.allCases.filter(\.isOpen)
        var idsByTarget: [String: [String]] = [:]
        for host in Set(views.filter { $0.status.isOpen }.map(\.hostID)) {
            let rows = try await store.withDB { db in try await SignedOpsTable.list(.init(hostID: host, statuses: open), now: now, in: db) }
            for row in rows {
                let target = "\(host)|\(try row.decode(column: "guest_id", as: String?.self) ?? "")|\(try row.decode(column: "op", as: String.self))"
                idsByTarget[target, default: []].append(try row.decode(column: "id", as: String.self))
            }
        }
        for index in views.indices {
            if let vmid = views[index].guestID.flatMap(Int.init) {
                views[index].guestName = reports[views[index].hostID]?.guests.first { $0.vmid == vmid }?.name
            }
        }
        for index in views.indices where views[index].status.isOpen {
            let view = views[index]
            let others = (idsByTarget["\(view.hostID)|\(view.guestID ?? "")|\(view.op)"] ?? []).filter { $0 != view.id }.sorted()
            if !others.isEmpty { views[index].duplicateOf = others }
        }
        return views
    }

    /// Volume mount points of a restore's guest without `backup` in the host's last report.
    static func volumesAtRisk(_ op: OpBlob?, report: HostReport?) -> [SignedOpView.VolumeRef]? {
        guard let op, op.op == .guestRestore, let vmid = op.guestID.flatMap(Int.init) else { return nil }
        guard let spec = report?.guests.first(where: { $0.vmid == vmid })?.spec else { return nil }
        return spec.mountPoints.filter { $0.key != "rootfs" && !$0.backup && !$0.volume.hasPrefix("/") }
            .map { SignedOpView.VolumeRef(key: $0.key, volume: $0.volume) }
    }

    public func signedOp(_ id: String, by principal: Principal) async throws -> SignedOpView {
        if case .guest = principal { throw HubError.forbidden("read signed ops") }
        guard let view = try await signedOpViews(.init(id: id)).first,
            principal.canReach(customerID: view.customerID)
        else { throw HubError.notFound("signed op \(id)") }
        if case .host(let h, _) = principal, h != view.hostID { throw HubError.notFound("signed op \(id)") }
        return view
    }

    /// Lists ops (operator: all; customer and host keys: their own), newest first.
    public func signedOps(hostID: String?, status: String?, by principal: Principal) async throws -> [SignedOpView] {
        if case .guest = principal { throw HubError.forbidden("list signed ops") }
        let wanted: SignedOpStatus?
        if let status {
            guard let parsed = SignedOpStatus(rawValue: status) else {
                throw HubError.badRequest("one of \(Self.signedOpStatuses.joined(separator: ", "))", path: "status")
            }
            wanted = parsed
        } else {
            wanted = nil
        }
        var hostFilter = hostID
        if case .host(let callerHost, _) = principal {
            if let hostID, hostID != callerHost { return [] }
            hostFilter = callerHost
        }
        let hostOnly = hostFilter
        return try await signedOpViews(.init(hostID: hostOnly, customerScope: principal.customerScope, statuses: wanted.map { [$0] }))
    }

    /// Stores the operator's signature after checking it against the registered keys (early
    /// feedback only: the agent verifies again).
    public func uploadSignature(opID: String, signature armored: String, by principal: Principal) async throws -> SignedOpView {
        guard principal == .operator else { throw HubError.forbidden("sign ops (operator only)") }
        let view = try await signedOp(opID, by: principal)
        guard view.status == .pendingSignature else {
            throw HubError(.conflict, "conflict", "op \(opID) is \(view.status.rawValue), not pending_signature")
        }
        let sig: SSHSignature
        do { sig = try SSHSignature(armored: armored) } catch {
            throw HubError.badRequest("not an SSH signature: \(error.message)", path: "$.signature")
        }
        guard sig.namespace == OpVerifier.namespace else {
            throw HubError.signatureRefused("signed for namespace '\(sig.namespace)'; use -n \(OpVerifier.namespace)", path: "$.signature")
        }
        let keys = try await operatorKeys(by: principal)
        guard let key = keys.first(where: { $0.fingerprint == sig.publicKey.fingerprint }) else {
            throw HubError.signatureRefused("key \(sig.publicKey.fingerprint) is not a registered operator key", path: "$.signature")
        }
        do { try sig.verify(message: Array(view.blob.utf8), requireUserPresence: true) } catch {
            throw HubError.signatureRefused("signature does not verify over this op's blob: \(error.message)", path: "$.signature")
        }
        let now = self.now
        let updated = try await store.withDB { db in
            try await SignedOpsTable.sign(id: opID, signature: sig.armored, signer: key.name + " " + key.fingerprint, at: now, in: db)
        }
        guard updated else { throw HubError(.conflict, "conflict", "op \(opID) changed while signing; list it again") }
        generations.notify(hostID: view.hostID)
        return try await signedOp(opID, by: principal)
    }

    /// The next signed op for the calling host (oldest first), marked delivered. An op delivered
    /// earlier but never answered is handed out again: the agent's journal recognises it by id.
    ///
    /// `excluding` names ops the box holds back this round (signed by a key it does not pin yet):
    /// they stay delivered, and the next one in line is handed out.
    public func nextSignedOp(excluding: Set<String> = [], by principal: Principal) async throws -> SignedOpView? {
        guard case .host(let hostID, _) = principal else { throw HubError.forbidden("fetch signed ops (host keys only)") }
        guard excluding.count <= 100 else { throw HubError.badRequest("at most 100 op ids", path: "exclude") }
        if try await hostRow(hostID)?.blocked == true { return nil }  // a blocked box gets nothing to act on
        let now = self.now
        guard
            let view = try await signedOpViews(
                .init(hostID: hostID, statuses: [.signed, .delivered], deliveryOrder: true, limit: excluding.count + 1)
            ).first(where: { !excluding.contains($0.id) })
        else { return nil }
        if view.status == .signed {
            try await store.withDB { db in try await SignedOpsTable.markDelivered(id: view.id, at: now, in: db) }
        }
        var out = view
        out.status = .delivered
        return out
    }

    /// The agent's outcome for a delivered op: `applied` or `rejected` with a reason (its error code).
    public func reportSignedOpResult(opID: String, outcome: String, reason: String?, by principal: Principal) async throws -> SignedOpView {
        guard case .host(let hostID, let customerID) = principal else { throw HubError.forbidden("report op results (host keys only)") }
        let view = try await signedOp(opID, by: principal)
        guard view.hostID == hostID else { throw HubError.notFound("signed op \(opID)") }
        guard ["applied", "rejected"].contains(outcome) else { throw HubError.badRequest("must be applied or rejected", path: "$.outcome") }
        // A box's reason is stored sanitized, never refused: a refusal would leave the op in
        // flight and stop the agent's cycle until it expires.
        let reason = reason.map { r -> String in
            let escaped = TerminalText.escaped(r)
            return escaped.count > 1000 ? String(escaped.prefix(997)) + "..." : escaped
        }
        guard [.delivered, .signed].contains(view.status) else {
            if view.status.rawValue == outcome { return view }  // a repeated report after a lost answer
            throw HubError(.conflict, "conflict", "op \(opID) is already \(view.status.rawValue)")
        }
        let now = self.now
        try await store.transaction { db in
            try await SignedOpsTable.finish(id: opID, outcome: outcome, reason: reason, at: now, in: db)
            var data: [String: JSONValue] = ["op_id": .string(opID), "op": .string(view.op)]
            if let g = view.guestID { data["vmid"] = .string(g) }
            if let reason { data["reason"] = .string(reason) }
            try await recordEvent(
                outcome == "applied" ? "op_applied" : "op_rejected", severity: outcome == "applied" ? .info : .warning, source: .host,
                hostID: hostID, customerID: customerID, data: .object(data), at: now, in: db)
            // A destroyed guest's controller keys die with it (the agent keys guests by vmid).
            if outcome == "applied", view.op == OpBlob.Op.guestDestroy.rawValue, let vmid = view.guestID,
                let guestID = try await GuestsTable.byIdempotencyKey(hostID: hostID, key: "vmid-\(vmid)", in: db),
                !(try await KeysTable.active(subjectID: guestID, in: db)).isEmpty
            {
                try await KeysTable.revokeAll(subjectID: guestID, at: now, in: db)
                try await recordEvent(
                    "keys_revoked", severity: .warning, hostID: hostID, guestID: guestID, customerID: customerID,
                    data: ["subject_id": .string(guestID), "reason": "guest destroyed", "vmid": .string(vmid)], at: now, in: db)
            }
        }
        keys.cache.removeAll()
        return try await signedOp(opID, by: principal)
    }

    /// Whether the host has signed ops waiting (for the control envelope): the one condition
    /// report ingest and the long-poll watcher use too.
    func hasSignedOps(hostID: String, in db: any SQLDatabase) async throws -> Bool {
        try await SignedOpsTable.hasPending(hostID: hostID, now: now, in: db)
    }
}
