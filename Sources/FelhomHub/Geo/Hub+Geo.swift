import FelhomCore
import Foundation

extension Hub {
    func geoClient() throws -> CloudflareGeo {
        guard let geo else {
            throw HubError(.conflict, "not_configured", "Cloudflare is not configured on this hub (set cloudflare_api_token)")
        }
        return geo
    }

    func geoFailed(_ e: GeoError) -> HubError {
        HubError(.badGateway, "cloudflare_error", e.description)
    }

    /// Allows only `countries` to reach the customer's zone (operator). Remembers the zone id.
    public func enableGeo(customerID: String, zoneID: String?, countries: [String], by p: Principal) async throws -> [String] {
        guard p == .operator else { throw HubError.forbidden("change geo rules (operator only)") }
        let c = try await customer(customerID, by: p)
        let stored = try await store.withDB { db in try await CustomersTable.cloudflareZone(c.id, in: db) }
        guard let zone = zoneID ?? stored else {
            throw HubError(.conflict, "zone_unknown", "no Cloudflare zone is recorded for this customer yet: send zone_id once", path: "$.zone_id")
        }
        let list: [String]
        do {
            try CloudflareGeo.validate(zone: zone)
            list = try CloudflareGeo.validate(countries: countries)
        } catch let e as GeoError {
            throw HubError.badRequest(e.message, path: e.message.hasPrefix("countries") || e.message.hasPrefix("list") ? "$.countries" : "$.zone_id")
        }
        let geo = try geoClient()
        do { try await geo.enable(zone: zone, countries: list) } catch let e as GeoError { throw geoFailed(e) }
        let now = self.now
        try await store.transaction { db in
            try await CustomersTable.setGeo(c.id, zone: zone, countries: list.joined(separator: ","), in: db)
            try await recordEvent("geo_enabled", customerID: c.id, data: ["countries": .array(list.map { .string($0) })], at: now, in: db)
        }
        return list
    }

    /// Disables the geo rule (`removeAll == false`) or deletes every felhom-managed rule of the zone.
    public func disableGeo(customerID: String, removeAll: Bool, by p: Principal) async throws -> Int {
        guard p == .operator else { throw HubError.forbidden("change geo rules (operator only)") }
        let c = try await customer(customerID, by: p)
        guard let zone = try await store.withDB({ db in try await CustomersTable.cloudflareZone(c.id, in: db) }) else {
            throw HubError(.conflict, "zone_unknown", "no Cloudflare zone recorded for this customer; enable a geo rule first")
        }
        let geo = try geoClient()
        var removed = 0
        do {
            if removeAll { removed = try await geo.removeAll(zone: zone) } else { try await geo.disable(zone: zone) }
        } catch let e as GeoError { throw geoFailed(e) }
        let now = self.now
        let count = removed
        try await store.transaction { db in
            try await CustomersTable.setGeo(c.id, zone: nil, countries: nil, in: db)
            try await recordEvent(
                removeAll ? "geo_removed" : "geo_disabled", customerID: c.id, data: ["removed": .int(Int64(count))],
                at: now, in: db)
        }
        return removed
    }
}
