import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

extension Hub {
    /// A host's allocatable capacity from its latest report; nil when it never reported.
    static func capacity(hostID: String, policy: Placement.Policy, in db: any SQLDatabase) async throws -> Placement.Capacity? {
        guard let row = try await ReportsTable.latestHostReport(hostID: hostID, in: db),
            let report = try? HostReport.decode(Data(row.body.utf8))
        else { return nil }
        return Placement.allocatable(cores: report.host.cores, memoryTotalBytes: report.host.memoryTotal, policy: policy)
    }

    /// A host's saved desired state: its draft and its published spec.
    static func savedStates(hostID: String, in db: any SQLDatabase) async throws -> (draft: DesiredState?, published: DesiredState?) {
        let draft = try await DesiredTable.draft(hostID: hostID, in: db).flatMap { try? DesiredState.decode(Data($0.utf8)) }
        let published = try await publishedSpecIfAny(hostID, in: db)?.0
        return (draft, published)
    }

    /// A customer's usage over all its hosts (each host's draft or published state, whichever is
    /// larger), with `hostID`'s states replaced by `replacing` when given.
    static func customerUsage(
        customerID: String, replacing hostID: String? = nil, with states: (draft: DesiredState?, published: DesiredState?)? = nil,
        in db: any SQLDatabase
    ) async throws -> Placement.Usage {
        var total = Placement.Usage()
        for id in try await QuotasTable.hostIDs(customerID: customerID, in: db) {
            let s = id == hostID && states != nil ? states! : try await savedStates(hostID: id, in: db)
            total = total + Placement.hostUsage(draft: s.draft, published: s.published)
        }
        return total
    }

    /// The one admission check of every desired-state change (save, publish, placement), inside
    /// the write's transaction: locks the customer's row, checks the spec `checked` against the
    /// host's allocatable capacity (409 `capacity_exceeded`), and the customer's usage with the
    /// host's new `states` against its quotas (409 `quota_exceeded` with `quota`, `limit`, `usage`,
    /// `requested`). Returns warnings (a host that
    /// never reported is not capacity-checked).
    func admit(
        hostID: String, customerID: String, checked: DesiredState, states: (draft: DesiredState?, published: DesiredState?),
        in db: any SQLDatabase
    ) async throws -> [String] {
        try await QuotasTable.lockCustomer(customerID, in: db)
        var warnings: [String] = []
        if let capacity = try await Self.capacity(hostID: hostID, policy: settings.capacity, in: db) {
            if capacity.cpu == nil { warnings.append("host \(hostID) has not reported its CPU count yet: CPU was not checked") }
            if let refusal = Placement.checkCapacity(hostID: hostID, usage: Placement.usage(checked), capacity: capacity) {
                var error = HubError(.conflict, "capacity_exceeded", refusal.description, path: "$.guests")
                error.details = [
                    "host_id": .string(hostID), "resource": .string(refusal.resource), "requested": .double(refusal.requested),
                    "allocatable": .double(refusal.allocatable),
                ]
                throw error
            }
        } else {
            warnings.append("host \(hostID) has never reported: its capacity is unknown and was not checked")
        }
        let quotas = try await QuotasTable.get(customerID: customerID, in: db)
        if quotas != Placement.Quotas() {
            let before = try await Self.customerUsage(customerID: customerID, in: db)
            let after = try await Self.customerUsage(customerID: customerID, replacing: hostID, with: states, in: db)
            if let r = Placement.checkQuotas(quotas, before: before, after: after) {
                var error = HubError(.conflict, "quota_exceeded", "customer \(customerID): \(r)")
                error.details = [
                    "quota": .string(r.quota), "limit": .int(Int64(r.limit)), "usage": .int(Int64(r.usage)),
                    "requested": .int(Int64(r.requested)),
                ]
                throw error
            }
        }
        return warnings
    }

    /// Runs a desired-state write of `hostID` (which calls ``admit``) in one transaction; a quota
    /// refusal is also recorded as a `quota_exceeded` event, after the write rolled back.
    func admitted<T: Sendable>(hostID: String, customerID: String, _ write: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await store.transaction(write)
        } catch let error as HubError where error.code == "quota_exceeded" {
            let now = self.now
            let data = JSONValue.object(error.details)
            try? await store.transaction { db in
                try await recordEvent("quota_exceeded", severity: .warning, hostID: hostID, customerID: customerID, data: data, at: now, in: db)
            }
            throw error
        }
    }
}
