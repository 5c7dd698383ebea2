import FelhomAPI
import FelhomCore
import Hummingbird

/// Disaster recovery: DR records (operator), the host's tunnel connector token, the box's own report, and the customer's
/// passphrase retrieval (no key: the passphrase is the credential, rate-limited per client).
enum RecoveryRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.put("recovery/:id") { req, ctx in
            let hostID = try ctx.parameters.require("id")
            try await hub.setDRRecord(hostID: hostID, try await HubAPI.decode(DRRecord.self, req), by: ctx.principal)
            return try HubAPI.encode(try await hub.recovery(hostID: hostID, by: ctx.principal))
        }
        routes.get("recovery/:id") { _, ctx in
            try HubAPI.encode(try await hub.recovery(hostID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.put("hosts/:id/tunnel-token") { req, ctx in
            let body = try HubAPI.decodeClosed(TunnelTokenUpload.self, try await HubAPI.collect(req), keys: ["connector_token"])
            return try HubAPI.encode(try await hub.setTunnelToken(hostID: try ctx.parameters.require("id"), body, by: ctx.principal))
        }
        routes.get("hosts/:id/tunnel-token") { _, ctx in
            try HubAPI.encode(try await hub.tunnelToken(hostID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.delete("hosts/:id/tunnel-token") { _, ctx in
            let hostID = try ctx.parameters.require("id")
            try await hub.removeTunnelToken(hostID: hostID, by: ctx.principal)
            return try HubAPI.encode(TunnelTokenView(hostID: hostID, set: false))
        }
        routes.post("recovery/box") { req, ctx in
            let body = try await HubAPI.decode(BoxRecoveryReport.self, req)
            try await hub.reportDRFromBox(
                storageManifest: body.storageManifest, pbsFingerprint: body.pbsFingerprint, wrappedEscrowKey: body.wrappedEscrowKey, by: ctx.principal
            )
            return try HubAPI.encode(Saved(saved: true))
        }
        return routes
    }

    static func anonymous(_ hub: Hub) -> RouteCollection<HubRequestContext> {
        let routes = RouteCollection(context: HubRequestContext.self)
        routes.post("retrieve") { req, ctx in
            let body = try await HubAPI.decode(RetrieveRequest.self, req)
            return try HubAPI.encode(
                try await hub.retrieve(
                    domain: body.domain, passphrase: body.passphrase, what: body.what, hubURL: HubAPI.publicURL(req), client: hub.client(of: req, ctx)
                ))
        }
        return routes
    }
}

/// Enrolling a box: the operator makes a token; the box trades it for its key (no bearer key).
enum EnrollmentRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("hosts/:id/enrollment") { req, ctx in
            let data = try await HubAPI.collect(req)
            let body = data.isEmpty ? NewEnrollmentToken() : try HubAPI.decode(NewEnrollmentToken.self, data)
            let token = try await hub.createEnrollmentToken(
                hostID: try ctx.parameters.require("id"), ttlSeconds: body.ttlSeconds, recovery: body.recovery ?? false, by: ctx.principal)
            return try HubAPI.encode(token, status: .created)
        }
        return routes
    }

    static func anonymous(_ hub: Hub) -> RouteCollection<HubRequestContext> {
        let routes = RouteCollection(context: HubRequestContext.self)
        routes.post("enroll") { req, _ in
            let body = try await HubAPI.decode(EnrollRequest.self, req)
            return try HubAPI.encode(try await hub.enroll(token: body.token), status: .created)
        }
        return routes
    }
}
