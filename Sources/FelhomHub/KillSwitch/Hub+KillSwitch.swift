import FelhomAPI
import FelhomCore
import Foundation

/// The operator's kill switch (issue 10 item 18): block a host, suspend a customer.
///
/// A blocked host keeps reporting (so it is known alive) but its reports are not stored, it gets
/// `blocked: true` in every envelope and no signed ops; the agent then only reports. A suspended
/// customer's hosts are blocked the same way and its customer and guest keys are refused (403).
/// Both are undone by the matching call and recorded as events.
extension Hub {
    /// Blocks or unblocks a host (operator only).
    public func setHostBlocked(_ hostID: String, blocked: Bool, by principal: Principal) async throws -> HostView {
        guard principal == .operator else { throw HubError.forbidden("block or unblock hosts (operator only)") }
        guard let existing = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let now = self.now
        try await store.transaction { db in
            try await HostsTable.setBlocked(hostID, blocked, in: db)
            try await recordEvent(
                blocked ? "host_blocked" : "host_unblocked", severity: blocked ? .warning : .info, hostID: hostID,
                customerID: existing.customerID, at: now, in: db)
        }
        generations.notify(hostID: hostID)  // a long-polling agent hears it now
        return try await host(hostID, by: principal)
    }

    /// Suspends or resumes a customer (operator only).
    public func setCustomerSuspended(_ customerID: String, suspended: Bool, by principal: Principal) async throws {
        guard principal == .operator else { throw HubError.forbidden("suspend or resume customers (operator only)") }
        guard try await customerExists(customerID) else { throw HubError.notFound("customer \(customerID)") }
        let now = self.now
        let hosts = try await store.transaction { db -> [String] in
            try await CustomersTable.setSuspended(customerID, at: suspended ? now : nil, in: db)
            let hosts = try await HostsTable.setCustomerSuspended(customerID: customerID, suspended, in: db)
            try await recordEvent(
                suspended ? "customer_suspended" : "customer_resumed", severity: suspended ? .warning : .info,
                customerID: customerID, at: now, in: db)
            return hosts
        }
        keys.cache.removeAll()
        for blockedHost in hosts { generations.notify(hostID: blockedHost) }
    }
}
