import FelhomAPI
import FelhomCore
import Hummingbird

/// Operator keys and the signed-op queue: queue, sign (the operator's CLI), deliver and answer
/// (the agent). The hub verifies nothing it could be trusted for: the agent is the authority.
enum SignedOpRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("operator-keys") { req, ctx in
            let body = try await HubAPI.decode(NewOperatorKey.self, req)
            return try HubAPI.encode(
                try await hub.registerOperatorKey(publicKey: body.publicKey, role: body.role, name: body.name, by: ctx.principal), status: .created)
        }
        routes.delete("operator-keys/:id") { _, ctx in
            try HubAPI.encode(try await hub.removeOperatorKey(id: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.post("signed-ops/:id/cancel") { _, ctx in
            try HubAPI.encode(try await hub.cancelSignedOp(try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.get("operator-keys") { _, ctx in
            try HubAPI.encode(OperatorKeyList(operatorKeys: try await hub.operatorKeys(by: ctx.principal)))
        }
        routes.post("signed-ops") { req, ctx in
            let body = try await HubAPI.decode(NewSignedOp.self, req)
            return try HubAPI.encode(try await hub.createSignedOp(body, by: ctx.principal), status: .created)
        }
        routes.get("signed-ops") { req, ctx in
            let query = req.uri.queryParameters
            return try HubAPI.encode(
                SignedOpList(signedOps: try await hub.signedOps(hostID: query.get("host_id"), status: query.get("status"), by: ctx.principal)))
        }
        routes.get("signed-ops/next") { req, ctx in
            let exclude = req.uri.queryParameters.get("exclude").map { Set($0.split(separator: ",").map(String.init)) } ?? []
            return try HubAPI.encode(NextSignedOp(op: try await hub.nextSignedOp(excluding: exclude, by: ctx.principal)))
        }
        routes.get("signed-ops/:id") { _, ctx in
            try HubAPI.encode(try await hub.signedOp(try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.post("signed-ops/:id/signature") { req, ctx in
            let body = try await HubAPI.decode(SignatureUpload.self, req)
            return try HubAPI.encode(
                try await hub.uploadSignature(opID: try ctx.parameters.require("id"), signature: body.signature, by: ctx.principal))
        }
        routes.post("signed-ops/:id/result") { req, ctx in
            let body = try await HubAPI.decode(SignedOpResult.self, req)
            return try HubAPI.encode(
                try await hub.reportSignedOpResult(
                    opID: try ctx.parameters.require("id"), outcome: body.outcome, reason: body.reason, by: ctx.principal))
        }
        return routes
    }
}
