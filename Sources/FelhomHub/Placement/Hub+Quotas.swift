import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

extension Hub {
    /// A customer's quotas with its usage and the quotas it is over (operator only).
    public func quotas(customerID: String, by principal: Principal) async throws -> QuotaView {
        guard principal == .operator else { throw HubError.forbidden("read quotas (operator only)") }
        return try await store.withDB { db in
            guard try await CustomersTable.exists(customerID, in: db) else { throw HubError.notFound("customer \(customerID)") }
            return try await Self.quotaView(customerID: customerID, in: db)
        }
    }

    static func quotaView(customerID: String, in db: any SQLDatabase) async throws -> QuotaView {
        let quotas = try await QuotasTable.get(customerID: customerID, in: db)
        let usage = try await customerUsage(customerID: customerID, in: db)
        return QuotaView(quotas: quotas, usage: usage, exceeded: Placement.exceeded(quotas, usage: usage))
    }

    /// Replaces a customer's quotas (operator only). Every field is optional; null or absent is
    /// no limit; a limit must be a whole number ≥ 0. A limit below what is in use is accepted
    /// and flagged in `exceeded` (and a `quota_lowered_below_usage` event): nothing is destroyed,
    /// only changes that would raise that usage are refused from now on.
    public func setQuotas(customerID: String, body: Data, by principal: Principal) async throws -> QuotaView {
        guard principal == .operator else { throw HubError.forbidden("set quotas (operator only)") }
        let keys: Set<String> = ["max_memory_mb", "max_guests", "max_routes", "max_public_ipv4"]
        guard case .object(let doc)? = try? JSONValue.parse(body) else { throw HubError.badRequest("must be a JSON object", path: "$") }
        if let extra = doc.keys.sorted().first(where: { !keys.contains($0) }) { throw HubError.badRequest("unknown key", path: "$.\(extra)") }
        func limit(_ key: String) throws -> Int? {
            switch doc[key] {
            case nil, .null?: return nil
            case .int(let v)? where v >= 0 && v <= 1 << 40: return Int(v)
            default: throw HubError.badRequest("must be a whole number ≥ 0, or null for no limit", path: "$.\(key)")
            }
        }
        let quotas = CustomerQuotas(
            maxMemoryMB: try limit("max_memory_mb"), maxGuests: try limit("max_guests"), maxRoutes: try limit("max_routes"),
            maxPublicIPv4: try limit("max_public_ipv4"))
        let now = self.now
        return try await store.transaction { db in
            guard try await CustomersTable.exists(customerID, in: db) else { throw HubError.notFound("customer \(customerID)") }
            try await QuotasTable.lockCustomer(customerID, in: db)
            try await QuotasTable.put(customerID: customerID, quotas, at: now, in: db)
            let view = try await Self.quotaView(customerID: customerID, in: db)
            var data: [String: JSONValue] = [
                "max_memory_mb": quotas.maxMemoryMB.map { .int(Int64($0)) } ?? .null, "max_guests": quotas.maxGuests.map { .int(Int64($0)) } ?? .null,
                "max_routes": quotas.maxRoutes.map { .int(Int64($0)) } ?? .null,
                "max_public_ipv4": quotas.maxPublicIPv4.map { .int(Int64($0)) } ?? .null,
            ]
            try await recordEvent("quotas_changed", customerID: customerID, data: .object(data), at: now, in: db)
            if !view.exceeded.isEmpty {
                data = ["exceeded": .array(view.exceeded.map { .string($0) })]
                try await recordEvent(
                    "quota_lowered_below_usage", severity: .warning, customerID: customerID, data: .object(data), at: now, in: db)
            }
            return view
        }
    }

    /// A host's allocatable capacity next to its usage (whoever may read the host).
    public func hostCapacity(hostID: String, by principal: Principal) async throws -> HostCapacityView {
        _ = try await hostForRead(hostID, by: principal)
        let policy = settings.capacity
        return try await store.withDB { db in
            let capacity = try await Self.capacity(hostID: hostID, policy: policy, in: db)
            let states = try await Self.savedStates(hostID: hostID, in: db)
            return HostCapacityView(
                hostID: hostID, allocatableCPU: capacity?.cpu, allocatableMemoryMB: capacity?.memoryMB,
                usage: Placement.hostUsage(draft: states.draft, published: states.published))
        }
    }

    /// Places a new guest (a guest spec without a host; `vmid` optional) on the customer's host
    /// with the most free allocatable memory that fits its memory cap and CPU share, and writes
    /// it into that host's draft (publishing stays the operator's step). 409 `no_capacity` names
    /// each host's binding resource (`hosts`); quotas apply as to any other change.
    public func placeGuest(customerID: String, body: Data, by principal: Principal) async throws -> GuestPlacement {
        guard principal == .operator else { throw HubError.forbidden("place guests (operator only)") }
        guard case .object(var doc)? = try? JSONValue.parse(body) else { throw HubError.badRequest("must be a guest object", path: "$") }
        let givenVMID = doc["vmid"] != nil
        if !givenVMID { doc["vmid"] = .int(100) }  // a placeholder for decoding; the host's next free vmid is used
        let guest: DesiredState.Guest
        do {
            let state = try DesiredState.decodeStrict(JSONValue.object(["guests": .array([.object(doc)])]).serialized())
            guest = state.guests[0]
        } catch let error as ContractError {
            throw HubError.badRequest(error.message, path: error.path.replacingOccurrences(of: "$.guests[0]", with: "$"))
        }
        let policy = settings.capacity
        let now = self.now
        let probe = try await store.withDB { db -> [(String, Placement.Candidate)] in
            guard try await CustomersTable.exists(customerID, in: db) else { throw HubError.notFound("customer \(customerID)") }
            var out: [(String, Placement.Candidate)] = []
            for id in try await QuotasTable.hostIDs(customerID: customerID, in: db) {
                let states = try await Self.savedStates(hostID: id, in: db)
                let capacity = try await Self.capacity(hostID: id, policy: policy, in: db)
                out.append(
                    (
                        id,
                        Placement.Candidate(
                            hostID: id, capacity: capacity, usage: Placement.hostUsage(draft: states.draft, published: states.published))
                    ))
            }
            return out
        }
        guard !probe.isEmpty else { throw HubError(.conflict, "no_hosts", "customer \(customerID) has no hosts") }
        let choice: Placement.Choice
        switch Placement.place(cpu: guest.cpu, memoryMB: guest.memoryMB, candidates: probe.map(\.1)) {
        case .success(let c): choice = c
        case .failure(let failure):
            let text = failure.misses.map { m in
                m.resource == "capacity_unknown"
                    ? "\(m.hostID): capacity unknown (never reported)"
                    : "\(m.hostID): \(m.resource) \(m.free.map { Placement.CapacityRefusal.text($0) } ?? "?") free, \(Placement.CapacityRefusal.text(m.requested)) needed"
            }.joined(separator: "; ")
            var error = HubError(.conflict, "no_capacity", "no host of customer \(customerID) fits the guest: \(text)")
            error.details = [
                "hosts": .array(
                    failure.misses.map { m in
                        .object([
                            "host_id": .string(m.hostID), "resource": .string(m.resource), "free": m.free.map { .double($0) } ?? .null,
                            "requested": .double(m.requested),
                        ])
                    })
            ]
            throw error
        }
        let hostID = choice.hostID
        let vmid = try await admitted(hostID: hostID, customerID: customerID) { db -> Int in
            let states = try await Self.savedStates(hostID: hostID, in: db)
            var draft = states.draft ?? states.published ?? DesiredState(guests: [])
            var placed = guest
            let taken = Set(draft.guests.map(\.vmid) + (states.published?.guests.map(\.vmid) ?? []))
            if !givenVMID { placed.vmid = max(100, (taken.max() ?? 99) + 1) }
            guard !taken.contains(placed.vmid) else {
                throw HubError(.conflict, "conflict", "host \(hostID) already has a guest \(placed.vmid)", path: "$.vmid")
            }
            guard !draft.guests.contains(where: { $0.name == placed.name }) else {
                throw HubError(.conflict, "conflict", "host \(hostID) already has a guest named '\(placed.name)'", path: "$.name")
            }
            draft.guests.append(placed)
            do { try draft.validate() } catch let error as ContractError { throw HubError.badRequest(error.message, path: error.path) }
            _ = try await admit(hostID: hostID, customerID: customerID, checked: draft, states: (draft, states.published), in: db)
            try await DesiredTable.saveDraft(hostID: hostID, spec: String(decoding: draft.encoded(), as: UTF8.self), at: now, in: db)
            try await recordEvent(
                "guest_placed", hostID: hostID, customerID: customerID,
                data: ["vmid": .int(Int64(placed.vmid)), "name": .string(placed.name), "reason": .string(choice.reason)], at: now, in: db)
            return placed.vmid
        }
        return GuestPlacement(hostID: hostID, vmid: vmid, reason: choice.reason, freeMemoryMB: choice.freeMemoryMB, freeCPU: choice.freeCPU)
    }
}
