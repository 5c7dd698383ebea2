import FelhomAPI
import FelhomCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Signed releases: register, upload the asset, read, download, roll out (docs/updates.md).
enum ReleaseRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("releases") { req, ctx in
            let body = try HubAPI.decodeClosed(NewRelease.self, try await HubAPI.collect(req), keys: ["manifest", "signature"])
            let (view, created) = try await hub.createRelease(body, by: ctx.principal)
            return try HubAPI.encode(view, status: created ? .created : .ok)
        }
        routes.get("releases") { _, ctx in
            try HubAPI.encode(ReleaseList(releases: try await hub.releases(by: ctx.principal)))
        }
        routes.get("releases/:component/:version") { _, ctx in
            try HubAPI.encode(
                try await hub.release(
                    component: try ctx.parameters.require("component"), version: try ctx.parameters.require("version"), by: ctx.principal))
        }
        routes.put("releases/:component/:version/asset") { req, ctx in
            try HubAPI.encode(
                try await hub.uploadReleaseAsset(
                    component: try ctx.parameters.require("component"), version: try ctx.parameters.require("version"), body: req.body,
                    by: ctx.principal))
        }
        routes.get("releases/:component/:version/asset") { _, ctx in
            let (size, chunk) = try await hub.releaseAsset(
                component: try ctx.parameters.require("component"), version: try ctx.parameters.require("version"), by: ctx.principal)
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody(contentLength: Int(size)) { writer in
                    var index: Int64 = 0
                    while let piece = try await chunk(index) {
                        try await writer.write(piece)
                        index += 1
                    }
                    try await writer.finish(nil)
                })
        }
        routes.post("releases/:component/:version/rollout") { req, ctx in
            let body = try HubAPI.decodeClosed(RolloutRequest.self, try await HubAPI.collect(req), keys: ["stage", "hosts"])
            return try HubAPI.encode(
                try await hub.rollout(
                    component: try ctx.parameters.require("component"), version: try ctx.parameters.require("version"), request: body,
                    by: ctx.principal))
        }
        return routes
    }
}
