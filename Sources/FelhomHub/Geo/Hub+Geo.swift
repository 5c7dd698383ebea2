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
    public func enableGeo(customerID: String, zoneID: String?, countries: [String], by principal: Principal) async throws -> [String] {
        guard principal == .operator else { throw HubError.forbidden("change geo rules (operator only)") }
        let customer = try await customer(customerID, by: principal)
        let stored = try await store.withDB { db in try await CustomersTable.cloudflareZone(customer.id, in: db) }
        guard let zone = zoneID ?? stored else {
            throw HubError(.conflict, "zone_unknown", "no Cloudflare zone is recorded for this customer yet: send zone_id once", path: "$.zone_id")
        }
        let list: [String]
        do {
            try CloudflareGeo.validate(zone: zone)
            list = try CloudflareGeo.validate(countries: countries)
        } catch let error as GeoError {
            throw HubError.badRequest(
                error.message, path: error.message.hasPrefix("countries") || error.message.hasPrefix("list") ? "$.countries" : "$.zone_id")
        }
        let geo = try geoClient()
        do { try await geo.enable(zone: zone, countries: list) } catch let error as GeoError { throw geoFailed(error) }
        let now = self.now
        try await store.transaction { db in
            try await CustomersTable.setGeo(customer.id, zone: zone, countries: list.joined(separator: ","), in: db)
            try await recordEvent("geo_enabled", customerID: customer.id, data: ["countries": .array(list.map { .string($0) })], at: now, in: db)
        }
        return list
    }

    /// Disables the geo rule (`removeAll == false`) or deletes every felhom-managed rule of the zone.
    public func disableGeo(customerID: String, removeAll: Bool, by principal: Principal) async throws -> Int {
        guard principal == .operator else { throw HubError.forbidden("change geo rules (operator only)") }
        let customer = try await customer(customerID, by: principal)
        guard let zone = try await store.withDB({ db in try await CustomersTable.cloudflareZone(customer.id, in: db) }) else {
            throw HubError(.conflict, "zone_unknown", "no Cloudflare zone recorded for this customer; enable a geo rule first")
        }
        let geo = try geoClient()
        var removed = 0
        do {
            if removeAll { removed = try await geo.removeAll(zone: zone) } else { try await geo.disable(zone: zone) }
        } catch let error as GeoError { throw geoFailed(error) }
        let now = self.now
        let count = removed
        try await store.transaction { db in
            try await CustomersTable.setGeo(customer.id, zone: nil, countries: nil, in: db)
            try await recordEvent(
                removeAll ? "geo_removed" : "geo_disabled", customerID: customer.id, data: ["removed": .int(Int64(count))],
                at: now, in: db)
        }
        return removed
    }
}
