import FelhomAPI
import FelhomCore
import Foundation
import Hummingbird

/// Hosts, their guests, and the kill switch.
enum HostRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("hosts") { req, ctx in
            let body = try await HubAPI.decode(NewHost.self, req)
            let (id, key) = try await hub.createHost(customerID: body.customerID, name: body.name, by: ctx.principal)
            return try HubAPI.encode(Created(id: id, apiKey: key), status: .created)
        }
        routes.get("hosts") { _, ctx in
            try HubAPI.encode(HostList(hosts: try await hub.hosts(by: ctx.principal)))
        }
        routes.get("hosts/:id") { _, ctx in
            try HubAPI.encode(try await hub.host(try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.post("hosts/:id/guests") { req, ctx in
            let body = try await HubAPI.decode(NewGuest.self, req)
            let (id, key) = try await hub.createGuest(
                hostID: try ctx.parameters.require("id"), name: body.name, idempotencyKey: body.idempotencyKey, by: ctx.principal)
            return try HubAPI.encode(Created(id: id, apiKey: key), status: .created)
        }
        routes.get("guests/:id/config") { req, ctx in
            try HubAPI.encode(
                try await hub.controllerConfig(guestID: try ctx.parameters.require("id"), hubURL: HubAPI.publicURL(req), by: ctx.principal))
        }
        routes.put("guests/:id/secrets/:bundle") { req, ctx in
            let upload = try await HubAPI.decode(SecretBundleUpload.self, req)
            return try HubAPI.encode(
                try await hub.putSecretBundle(
                    guestID: try ctx.parameters.require("id"), bundle: try ctx.parameters.require("bundle"), upload: upload, by: ctx.principal))
        }
        routes.get("guests/:id/secrets") { _, ctx in
            try HubAPI.encode(SecretBundleList(bundles: try await hub.secretBundles(guestID: try ctx.parameters.require("id"), by: ctx.principal)))
        }
        for (action, blocked) in [("block", true), ("unblock", false)] {
            routes.post("hosts/:id/\(action)") { _, ctx in
                try HubAPI.encode(try await hub.setHostBlocked(try ctx.parameters.require("id"), blocked: blocked, by: ctx.principal))
            }
        }
        return routes
    }
}

/// Desired state: the draft, publishing, and drift against the last report.
enum DesiredRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get("hosts/:id/desired") { _, ctx in
            try HubAPI.encode(try await hub.desired(hostID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.put("hosts/:id/desired") { req, ctx in
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(try await hub.putDesired(hostID: try ctx.parameters.require("id"), body: body, by: ctx.principal))
        }
        routes.post("hosts/:id/desired/publish") { _, ctx in
            try HubAPI.encode(Published(generation: try await hub.publishDesired(hostID: try ctx.parameters.require("id"), by: ctx.principal)))
        }
        routes.post("hosts/:id/requests") { req, ctx in
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(
                try await hub.requestNow(hostID: try ctx.parameters.require("id"), body: body, by: ctx.principal), status: .accepted)
        }
        routes.get("hosts/:id/drift") { _, ctx in
            try HubAPI.encode(try await hub.drift(hostID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.get("hosts/:id/capacity") { _, ctx in
            try HubAPI.encode(try await hub.hostCapacity(hostID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.get("hosts/:id/volume-snapshots") { req, ctx in
            let list = try await hub.volumeSnapshots(
                hostID: try ctx.parameters.require("id"), volumeID: req.uri.queryParameters.get("volume_id"), by: ctx.principal)
            return try HubAPI.encode(VolumeSnapshotList(snapshots: list))
        }
        routes.post("hosts/:id/volume-snapshots/deleted") { req, ctx in
            let body = try HubAPI.decodeClosed(DeletedVolumeSnapshots.self, try await HubAPI.collect(req), keys: ["snapshot_ids"])
            let changed = try await hub.markVolumeSnapshotsDeleted(
                hostID: try ctx.parameters.require("id"), snapshotIDs: body.snapshotIDs, by: ctx.principal)
            return try HubAPI.encode(["marked": changed])
        }
        routes.get("hosts/:id/report") { _, ctx in
            let body = try await hub.latestReport(hostID: try ctx.parameters.require("id"), by: ctx.principal)
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        return routes
    }
}

/// What boxes and guests send: reports and the long-poll for control.
enum ReportRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("host-report") { req, ctx in
            try hub.admit(.hostReport, by: ctx.principal)  // before the body is read
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(try await hub.ingestHostReport(body, by: ctx.principal))
        }
        routes.post("volume-snapshots") { req, ctx in
            let keys: Set<String> = [
                "volume_id", "snapshot_id", "created_at", "size", "object_size", "checksum", "encryption_key_id", "wrapped_data_key", "object_key",
                "state",
            ]
            let record = try HubAPI.decodeClosed(VolumeSnapshotRecord.self, try await HubAPI.collect(req), keys: keys)
            try await hub.recordVolumeSnapshot(record, by: ctx.principal)
            return try HubAPI.encode(Saved(saved: true))
        }
        routes.post("guest-report") { req, ctx in
            try hub.admit(.guestReport, by: ctx.principal)
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(try await hub.ingestGuestReport(body, by: ctx.principal))
        }
        routes.get("control") { req, ctx in
            let after = try req.uri.queryParameters.get("after_generation").map { text -> Int64 in
                guard let value = Int64(text), value >= 0 else {
                    throw HubError.badRequest("must be a non-negative integer", path: "after_generation")
                }
                return value
            }
            let wait =
                try req.uri.queryParameters.get("wait").map { text -> Int in
                    guard let value = Int(text), (0...55).contains(value) else { throw HubError.badRequest("must be 0…55 seconds", path: "wait") }
                    return value
                } ?? 0
            return try HubAPI.encode(try await hub.control(after: after, wait: wait, by: ctx.principal))
        }
        return routes
    }
}

/// Events: posted by boxes and guests, listed by the operator and customers.
enum EventRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("events") { req, ctx in
            try hub.admit(.event, by: ctx.principal)
            let event = try await HubAPI.decode(NewEvent.self, req)
            return try HubAPI.encode(try await hub.postEvent(event, by: ctx.principal), status: .created)
        }
        routes.get("events") { req, ctx in
            let query = req.uri.queryParameters
            let since = try query.get("since").map { text -> Date in
                guard let parsed = Timestamp(rfc3339: text) else {
                    throw HubError.badRequest("must be an RFC 3339 time like 2026-01-01T00:00:00Z", path: "since")
                }
                return parsed.date
            }
            let limit =
                try query.get("limit").map { text -> Int in
                    guard let value = Int(text), (1...1000).contains(value) else { throw HubError.badRequest("must be 1…1000", path: "limit") }
                    return value
                } ?? 100
            let list = try await hub.events(hostID: query.get("host_id"), type: query.get("type"), since: since, limit: limit, by: ctx.principal)
            return try HubAPI.encode(EventList(events: list))
        }
        return routes
    }
}

/// Cloudflare geo rules of a customer's zone.
enum GeoRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.put("customers/:id/geo") { req, ctx in
            let body = try await HubAPI.decode(GeoRequest.self, req)
            let list = try await hub.enableGeo(
                customerID: try ctx.parameters.require("id"), zoneID: body.zoneID, countries: body.countries, by: ctx.principal)
            return try HubAPI.encode(GeoAllowed(allowedCountries: list))
        }
        routes.delete("customers/:id/geo") { _, ctx in
            _ = try await hub.disableGeo(customerID: try ctx.parameters.require("id"), removeAll: false, by: ctx.principal)
            return try HubAPI.encode(GeoDisabled(enabled: false))
        }
        routes.post("customers/:id/geo/remove-all") { _, ctx in
            try HubAPI.encode(
                GeoRemoved(removed: try await hub.disableGeo(customerID: try ctx.parameters.require("id"), removeAll: true, by: ctx.principal)))
        }
        return routes
    }
}
