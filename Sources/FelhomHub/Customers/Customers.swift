import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

extension Hub {
    /// Event types a customer may choose to be mailed about (``EventRegistry``: each has a
    /// Hungarian and an English phrase).
    public static let customerNotifiableTypes: Set<String> = Set(EventRegistry.all.filter(\.customerMailable).map(\.name))

    func customerView(_ r: any SQLRow) throws -> CustomerView {
        let prefs = try r.decode(column: "notify_types", as: String?.self)
            .flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }
        return CustomerView(
            id: try r.decode(column: "id", as: String.self), name: try r.decode(column: "name", as: String.self),
            email: try r.decode(column: "email", as: String.self), domain: try r.decode(column: "domain", as: String.self),
            timezone: try r.decode(column: "timezone", as: String.self), language: try r.decode(column: "language", as: String.self),
            notifyTypes: (prefs ?? notifications.customerDefaultTypes.sorted()).sorted(), notifyTypesDefault: prefs == nil,
            createdAt: Timestamp(secondsSince1970: try r.decode(column: "created_at", as: Int64.self)),
            suspended: !((try? r.decodeNil(column: "suspended_at")) ?? true))
    }

    /// All customers (operator) or the caller's own (customer key). Host and guest keys may not list customers.
    public func customers(by principal: Principal) async throws -> [CustomerView] {
        switch principal {
        case .operator, .customer: break
        default: throw HubError.forbidden("list customers")
        }
        let rows = try await store.withDB { db in try await CustomersTable.list(scope: principal.customerScope, in: db) }
        return try rows.map(customerView)
    }

    /// One customer: the operator, or that customer's own key; another customer's id answers 404.
    public func customer(_ id: String, by principal: Principal) async throws -> CustomerView {
        switch principal {
        case .operator, .customer: break
        default: throw HubError.forbidden("read customers")
        }
        guard principal.canReach(customerID: id),
            let row = try await store.withDB({ db in try await CustomersTable.find(id, in: db) })
        else { throw HubError.notFound("customer \(id)") }
        return try customerView(row)
    }

    /// Sets which event types mail this customer; `nil` returns to the default. Unknown types are a 400
    /// naming the item; nothing is stored then.
    public func setNotificationTypes(customerID: String, types: [String]?, by principal: Principal) async throws -> CustomerView {
        switch principal {
        case .operator, .customer: break
        default: throw HubError.forbidden("change notification preferences")
        }
        guard principal.canReach(customerID: customerID), try await customerExists(customerID) else {
            throw HubError.notFound("customer \(customerID)")
        }
        var stored: String?
        if let types {
            for (i, t) in types.enumerated() where !Self.customerNotifiableTypes.contains(t) {
                throw HubError.badRequest(
                    "unknown event type '\(t)'; choose from \(Self.customerNotifiableTypes.sorted().joined(separator: ", "))",
                    path: "$.types[\(i)]")
            }
            let unique = Array(Set(types)).sorted()
            stored = String(decoding: try JSONEncoder().encode(unique), as: UTF8.self)
        }
        let value = stored
        try await store.withDB { db in try await CustomersTable.setNotifyTypes(customerID, json: value, in: db) }
        return try await customer(customerID, by: principal)
    }

    /// Revokes every API key of a host, guest or customer (operator only). Returns how many keys
    /// were revoked; records a `keys_revoked` event. Other hub replicas stop accepting the keys
    /// within the key cache's lifetime (5 s).
    public func revokeKeys(subjectID: String, by principal: Principal) async throws -> Int {
        guard principal == .operator else { throw HubError.forbidden("revoke keys") }
        let now = self.now
        let count = try await store.transaction { db -> Int in
            let rows = try await KeysTable.active(subjectID: subjectID, in: db)
            guard let first = rows.first else { return 0 }
            try await KeysTable.revokeAll(subjectID: subjectID, at: now, in: db)
            let kind = first.kind
            try await recordEvent(
                "keys_revoked", severity: .warning, hostID: kind == "host" ? subjectID : nil, guestID: kind == "guest" ? subjectID : nil,
                customerID: first.customerID,
                data: ["subject_id": .string(subjectID), "kind": .string(kind), "count": .int(Int64(rows.count))], at: now, in: db)
            return rows.count
        }
        keys.cache.removeAll()
        guard count > 0 else { throw HubError.notFound("no active keys for '\(subjectID)'") }
        return count
    }
}
