import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

extension Hub {
    /// Who may read a host's desired state: the operator, the host itself, its customer.
    func hostForRead(_ hostID: String, by principal: Principal) async throws -> HostView {
        switch principal {
        case .operator, .customer: return try await host(hostID, by: principal)
        case .host(let h, _) where h == hostID: return try await host(hostID, by: principal)
        case .host: throw HubError.notFound("host \(hostID)")
        case .guest: throw HubError.forbidden("read desired state")
        }
    }

    /// The latest published spec of a host and its generation, from the durable table.
    func publishedSpec(_ hostID: String, in db: any SQLDatabase) async throws -> (DesiredState, Int64, Int64)? {
        try await Self.publishedSpecIfAny(hostID, in: db)
    }

    static func publishedSpecIfAny(_ hostID: String, in db: any SQLDatabase) async throws -> (DesiredState, Int64, Int64)? {
        guard let row = try await DesiredTable.latestPublished(hostID: hostID, in: db) else { return nil }
        return (try DesiredState.decode(Data(row.spec.utf8)), row.generation, row.publishedAt)
    }

    public func desired(hostID: String, by principal: Principal) async throws -> DesiredView {
        let host = try await hostForRead(hostID, by: principal)
        let (published, draft) = try await store.withDB { db -> ((DesiredState, Int64, Int64)?, DesiredState?) in
            let pub = try await publishedSpec(hostID, in: db)
            let draft = try await DesiredTable.draft(hostID: hostID, in: db).map { try DesiredState.decode(Data($0.utf8)) }
            return (pub, draft)
        }
        let showDraft: Bool = if case .host = principal { false } else { true }
        return DesiredView(
            hostID: host.id, generation: published?.1 ?? 0, spec: published?.0, publishedAt: published.map { Timestamp(secondsSince1970: $0.2) },
            draft: showDraft ? (draft ?? published?.0) : nil, unpublishedChanges: draft != nil && draft != published?.0)
    }

    /// Saves the operator's draft after validating it (400 naming the field). Publishing is separate.
    public func putDesired(hostID: String, body: Data, by principal: Principal) async throws -> DesiredView {
        guard principal == .operator else { throw HubError.forbidden("edit desired state (operator only)") }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        // `requests` is hub-managed (POST …/requests): a draft's own list is checked for shape, then dropped.
        var body = body
        if case .object(var doc)? = try? JSONValue.parse(body), let list = doc["requests"] {
            try Self.checkDraftRequests(list)
            doc["requests"] = nil
            body = JSONValue.object(doc).serialized()
        }
        let spec: DesiredState
        do { spec = try DesiredState.decodeStrict(body) } catch let error as ContractError {
            throw HubError.badRequest(error.message, path: error.path)
        }
        let text = String(decoding: spec.encoded(), as: UTF8.self)
        let now = self.now
        // Capacity and quotas are checked and the draft written in one transaction (the
        // customer's row locked), so concurrent edits cannot together pass a quota.
        let warnings = try await admitted(hostID: hostID, customerID: host.customerID) { db in
            try await Self.checkDiskPolicies(spec, hostID: hostID, in: db)
            let published = try await Self.publishedSpecIfAny(hostID, in: db)?.0
            let warnings = try await admit(hostID: hostID, customerID: host.customerID, checked: spec, states: (spec, published), in: db)
            try await DesiredTable.saveDraft(hostID: hostID, spec: text, at: now, in: db)
            return warnings
        }
        var view = try await desired(hostID: hostID, by: principal)
        view.warnings = warnings.isEmpty ? nil : warnings
        return view
    }

    /// The storage handshake (SPEC §1 rule 7): a disk policy may only name a disk the box has
    /// reported (its latest `storage_targets`). Policies already in the draft or the published
    /// state stay valid while their disk is away, so an unrelated edit never fails because a USB
    /// disk is unplugged. 409 `unknown_disk` names the JSON path and the UUID.
    static func checkDiskPolicies(_ spec: DesiredState, hostID: String, in db: any SQLDatabase) async throws {
        guard !spec.storage.isEmpty else { return }
        var known = Set<String>()
        if let row = try await ReportsTable.latestHostReport(hostID: hostID, in: db),
            let report = try? HostReport.decode(Data(row.body.utf8))
        {
            known.formUnion(report.storageTargets.map { $0.uuid.lowercased() })
        }
        if let draft = try await DesiredTable.draft(hostID: hostID, in: db), let old = try? DesiredState.decode(Data(draft.utf8)) {
            known.formUnion(old.storage.map { $0.uuid.lowercased() })
        }
        if let (published, _, _) = try await Hub.publishedSpecIfAny(hostID, in: db) {
            known.formUnion(published.storage.map { $0.uuid.lowercased() })
        }
        for (i, policy) in spec.storage.enumerated() where !known.contains(policy.uuid.lowercased()) {
            throw HubError(
                .conflict, "unknown_disk",
                "host \(hostID) has not reported a disk with filesystem UUID \(policy.uuid): plug it in and wait for it to appear as unassigned in storage_targets",
                path: "$.storage[\(i)].uuid")
        }
    }

    /// Asks the box for an app-consistent backup or a restore test of one guest now: a new
    /// generation of the published state carrying the request (the box acts on each request id
    /// once; the latest ``DesiredState/maxRequests`` are kept). Box-initiated as always: the
    /// host's long-poll wakes and the agent fetches it.
    public func requestNow(hostID: String, body: Data, by principal: Principal) async throws -> DesiredState.Request {
        guard principal == .operator else { throw HubError.forbidden("request a backup or restore test (operator only)") }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        if let doc = try? JSONValue.parse(body), let extra = doc.objectValue?.keys.first(where: { !["kind", "vmid"].contains($0) }) {
            throw HubError.badRequest("unknown key", path: "$.\(extra)")
        }
        let asked: NewOperatorRequest
        do { asked = try JSONDecoder().decode(NewOperatorRequest.self, from: body) } catch let error as DecodingError {
            throw HubError.badRequest(
                error.pathText == "$.kind" ? "must be backup or restore_test" : error.reason, path: error.pathText)
        }
        let now = self.now
        let request = DesiredState.Request(
            id: "req-" + Ids.make("r").suffix(12), kind: asked.kind, vmid: asked.vmid,
            requestedAt: RFC3339.format(Date(timeIntervalSince1970: TimeInterval(now))))
        try await store.transaction { db in
            guard var (spec, _, _) = try await publishedSpec(hostID, in: db) else {
                throw HubError(.conflict, "no_published_state", "host \(hostID) has no published desired state yet")
            }
            guard spec.guests.contains(where: { $0.vmid == asked.vmid }) else {
                throw HubError(.conflict, "guest_not_published", "guest \(asked.vmid) is not in the published desired state of \(hostID)")
            }
            guard let storage = spec.storagePolicy.backupStorage, !storage.isEmpty else {
                throw HubError(
                    .conflict, "no_backup_storage", "the published desired state has no storage_policy.backup_storage: backups are off on this host")
            }
            spec.requests = Array((spec.requests + [request]).suffix(DesiredState.maxRequests))
            guard let gen = try await HostsTable.bumpGeneration(hostID: hostID, in: db) else { throw HubError.notFound("host \(hostID)") }
            try await DesiredTable.insertPublished(
                hostID: hostID, generation: gen, spec: String(decoding: spec.encoded(), as: UTF8.self), at: now, in: db)
            try await recordEvent(
                "operator_request", hostID: hostID, customerID: host.customerID,
                data: [
                    "generation": .int(gen), "request": .string(request.id), "kind": .string(request.kind.rawValue),
                    "vmid": .int(Int64(request.vmid)),
                ],
                at: now, in: db)
        }
        generations.notify(hostID: hostID)
        return request
    }

    /// A draft's `requests` must still be well formed (types, keys, id pattern, at most
    /// ``DesiredState/maxRequests``) even though they are dropped; 400 names the path.
    static func checkDraftRequests(_ list: JSONValue) throws {
        if list == .null { return }
        guard case .array(let items) = list, items.count <= DesiredState.maxRequests else {
            throw HubError.badRequest("must be an array of at most \(DesiredState.maxRequests) requests", path: "$.requests")
        }
        for (i, item) in items.enumerated() {
            let p = "$.requests[\(i)]"
            guard case .object(let o) = item else { throw HubError.badRequest("must be an object {id, kind, vmid}", path: p) }
            if let extra = o.keys.sorted().first(where: { !["id", "kind", "vmid", "requested_at"].contains($0) }) {
                throw HubError.badRequest("unknown key", path: "\(p).\(extra)")
            }
            guard let id = o["id"]?.stringValue, Pattern.whole(id, #"[a-z0-9-]{1,40}"#) else {
                throw HubError.badRequest("must be 1–40 characters of a-z, 0-9 and '-'", path: "\(p).id")
            }
            guard let kind = o["kind"]?.stringValue, DesiredState.Request.Kind(rawValue: kind) != nil else {
                throw HubError.badRequest("must be backup or restore_test", path: "\(p).kind")
            }
            guard case .int(let vmid)? = o["vmid"], (100...999_999_999).contains(vmid) else {
                throw HubError.badRequest("must be an integer 100…999999999", path: "\(p).vmid")
            }
            if let at = o["requested_at"], at != .null, at.stringValue == nil {
                throw HubError.badRequest("must be a string", path: "\(p).requested_at")
            }
        }
    }

    /// Publishes the draft: bumps `desired_generation`, keeps the spec durably under that
    /// generation, records `desired_published`, and wakes the host's long-poll. Apps are never touched.
    public func publishDesired(hostID: String, by principal: Principal) async throws -> Int64 {
        guard principal == .operator else { throw HubError.forbidden("publish desired state (operator only)") }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let now = self.now
        let gen = try await admitted(hostID: hostID, customerID: host.customerID) { db -> Int64 in
            guard let draft = try await DesiredTable.draft(hostID: hostID, in: db) else {
                throw HubError(.conflict, "no_draft", "no draft to publish: PUT /api/v1/hosts/\(hostID)/desired first")
            }
            // Requests are hub-managed: the published ones carry over (for guests still listed).
            var next = try DesiredState.decode(Data(draft.utf8))
            let carried = try await publishedSpec(hostID, in: db)?.0.requests ?? []
            next.requests = carried.filter { r in next.guests.contains { $0.vmid == r.vmid } }
            _ = try await admit(hostID: hostID, customerID: host.customerID, checked: next, states: (next, next), in: db)
            let gen = try await Self.storePublished(next, hostID: hostID, at: now, in: db)
            try await recordEvent("desired_published", hostID: hostID, customerID: host.customerID, data: ["generation": .int(gen)], at: now, in: db)
            return gen
        }
        generations.notify(hostID: hostID)
        return gen
    }

    /// Keeps `spec` as the host's next published generation (the one generation bump, also used
    /// by Hub.bumpGeneration) and returns it; the caller records why and wakes the host.
    static func storePublished(_ spec: DesiredState, hostID: String, at now: Int64, in db: any SQLDatabase) async throws -> Int64 {
        guard let gen = try await HostsTable.bumpGeneration(hostID: hostID, in: db) else { throw HubError.notFound("host \(hostID)") }
        try await DesiredTable.insertPublished(
            hostID: hostID, generation: gen, spec: String(decoding: spec.encoded(), as: UTF8.self), at: now, in: db)
        return gen
    }

    /// The host's latest report as it sent it (operator, its customer, the host itself); 404 when
    /// it has not reported yet.
    public func latestReport(hostID: String, by principal: Principal) async throws -> Data {
        _ = try await hostForRead(hostID, by: principal)
        guard let row = try await store.withDB({ db in try await ReportsTable.latestHostReport(hostID: hostID, in: db) }) else {
            throw HubError.notFound("a report of host \(hostID)")
        }
        return Data(row.body.utf8)
    }

    public func drift(hostID: String, by principal: Principal) async throws -> DriftView {
        _ = try await hostForRead(hostID, by: principal)
        let (published, report, at) = try await store.withDB { db -> ((DesiredState, Int64, Int64)?, HostReport?, Int64?) in
            let pub = try await publishedSpec(hostID, in: db)
            let row = try await ReportsTable.latestHostReport(hostID: hostID, in: db)
            let report = try row.map { try HostReport.decode(Data($0.body.utf8)) }
            return (pub, report, row?.receivedAt)
        }
        let guests = Drift.compute(desired: published?.0, report: report)
        return DriftView(
            hostID: hostID, generation: published?.1 ?? 0, reportedAt: at.map(Timestamp.init(secondsSince1970:)),
            inSync: report != nil && guests.allSatisfy(\.state.isSettled), guests: guests)
    }
}
