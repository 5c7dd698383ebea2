import FelhomCore
import Foundation
import SQLKit

/// SQL of the `events` table.
enum EventsTable {
    /// Inserts an event; with `ignoreDuplicate` an existing id is left alone. Returns whether a row was written.
    @discardableResult
    static func insert(_ ev: HubEvent, in db: any SQLDatabase, ignoreDuplicate: Bool = false) async throws -> Bool {
        let query = db.insert(into: "events").columns("id", "at", "source", "host_id", "guest_id", "customer_id", "type", "severity", "data")
            .values(
                SQLBind(ev.id), SQLBind(Int64(ev.at.timeIntervalSince1970)), SQLBind(ev.source.rawValue), SQLBind(ev.hostID),
                SQLBind(ev.guestID), SQLBind(ev.customerID), SQLBind(ev.type), SQLBind(ev.severity.rawValue),
                SQLBind(ev.data.serializedString()))
        if ignoreDuplicate { return try await !query.ignoringConflicts().returning("id").all().isEmpty }
        try await query.run()
        return true
    }

    /// Events, newest first, filtered.
    static func list(customerScope: String?, hostID: String?, type: String?, since: Int64?, limit: Int, in db: any SQLDatabase) async throws
        -> [HubEvent]
    {
        var query = db.select().column("*").from("events")
        if let customerID = customerScope { query = query.where("customer_id", .equal, SQLBind(customerID)) }
        if let hostID { query = query.where("host_id", .equal, SQLBind(hostID)) }
        if let type { query = query.where("type", .equal, SQLBind(type)) }
        if let since { query = query.where("at", .greaterThanOrEqual, SQLBind(since)) }
        return try await query.orderBy("at", .descending).orderBy("id", .descending).limit(limit).all().map(event(from:))
    }

    /// One event by id.
    static func get(_ id: String, in db: any SQLDatabase) async throws -> HubEvent? {
        try await db.select().column("*").from("events").where("id", .equal, SQLBind(id)).limit(1).first().map(event(from:))
    }

    static func event(from r: any SQLRow) throws -> HubEvent {
        HubEvent(
            id: try r.decode(column: "id", as: String.self),
            at: Date(timeIntervalSince1970: TimeInterval(try r.decode(column: "at", as: Int64.self))),
            source: HubEvent.Source(rawValue: try r.decode(column: "source", as: String.self)) ?? .hub,
            hostID: try r.decode(column: "host_id", as: String?.self), guestID: try r.decode(column: "guest_id", as: String?.self),
            customerID: try r.decode(column: "customer_id", as: String?.self), type: try r.decode(column: "type", as: String.self),
            severity: HubEvent.Severity(rawValue: try r.decode(column: "severity", as: String.self)) ?? .info,
            data: (try? JSONValue.parse(try r.decode(column: "data", as: String.self))) ?? .object([:]))
    }

    /// Whether the host has an event of one of `types` at or after `since`.
    static func exists(hostID: String, types: [String], since: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column("id").from("events").where("host_id", .equal, SQLBind(hostID))
            .where("type", .in, SQLBind.group(types)).where("at", .greaterThanOrEqual, SQLBind(since)).limit(1).first() != nil
    }

    /// The newest event of one of `types` for a host: type and time.
    /// The newest event of `types` for a host with its data.
    static func latestWithData(hostID: String, types: [String], in db: any SQLDatabase) async throws -> (type: String, data: JSONValue)? {
        guard
            let row = try await db.select().columns("type", "data").from("events").where("host_id", .equal, SQLBind(hostID))
                .where("type", .in, SQLBind.group(types)).orderBy("at", .descending).limit(1).first()
        else { return nil }
        let data = (try? JSONValue.parse(Data(try row.decode(column: "data", as: String.self).utf8))) ?? .object([:])
        return (try row.decode(column: "type", as: String.self), data)
    }

    static func latest(hostID: String, types: [String], in db: any SQLDatabase) async throws -> (type: String, at: Int64)? {
        guard
            let row = try await db.select().columns("type", "at").from("events").where("host_id", .equal, SQLBind(hostID))
                .where("type", .in, SQLBind.group(types)).orderBy("at", .descending).limit(1).first()
        else { return nil }
        return (try row.decode(column: "type", as: String.self), try row.decode(column: "at", as: Int64.self))
    }
}
