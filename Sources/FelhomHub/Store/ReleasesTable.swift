import FelhomAPI
import FelhomCore
import Foundation
import NIOCore
import SQLKit

/// SQL of releases (`releases`), their assets in chunks (`release_chunks`) and roll-outs
/// (`release_rollouts`).
enum ReleasesTable {
    /// Bytes per stored chunk of an asset.
    static let chunkSize = 4 << 20

    struct Row: Sendable {
        var component: String
        var version: String
        var manifest: String
        var signature: String
        var sha256: String
        var size: Int64
        var signer: String
        var createdAt: Int64
        var uploadedAt: Int64?
    }

    static func row(_ r: any SQLRow) throws -> Row {
        Row(
            component: try r.decode(column: "component", as: String.self), version: try r.decode(column: "version", as: String.self),
            manifest: try r.decode(column: "manifest", as: String.self), signature: try r.decode(column: "signature", as: String.self),
            sha256: try r.decode(column: "sha256", as: String.self), size: try r.decode(column: "size", as: Int64.self),
            signer: try r.decode(column: "signer", as: String.self), createdAt: try r.decode(column: "created_at", as: Int64.self),
            uploadedAt: try r.decodeNil(column: "uploaded_at") ? nil : try r.decode(column: "uploaded_at", as: Int64.self))
    }

    static func get(component: String, version: String, in db: any SQLDatabase) async throws -> Row? {
        try await db.select().column("*").from("releases").where("component", .equal, SQLBind(component))
            .where("version", .equal, SQLBind(version)).first().map(row)
    }

    static func list(in db: any SQLDatabase) async throws -> [Row] {
        try await db.select().column("*").from("releases").orderBy("component").orderBy("created_at", .descending).orderBy("version").all().map(row)
    }

    static func insert(_ r: Row, in db: any SQLDatabase) async throws {
        try await db.insert(into: "releases")
            .columns("component", "version", "manifest", "signature", "sha256", "size", "signer", "created_at", "uploaded_at")
            .values(
                SQLBind(r.component), SQLBind(r.version), SQLBind(r.manifest), SQLBind(r.signature), SQLBind(r.sha256), SQLBind(r.size),
                SQLBind(r.signer), SQLBind(r.createdAt), SQLBind(r.uploadedAt)
            ).run()
    }

    /// Drops every stored chunk of an asset (before a new upload, or after a failed one).
    static func deleteChunks(component: String, version: String, in db: any SQLDatabase) async throws {
        try await db.delete(from: "release_chunks").where("component", .equal, SQLBind(component)).where("version", .equal, SQLBind(version)).run()
    }

    static func insertChunk(component: String, version: String, index: Int64, data: ByteBuffer, in db: any SQLDatabase) async throws {
        try await db.insert(into: "release_chunks").columns("component", "version", "idx", "data")
            .values(SQLBind(component), SQLBind(version), SQLBind(index), SQLBind(data)).run()
    }

    static func chunk(component: String, version: String, index: Int64, in db: any SQLDatabase) async throws -> ByteBuffer? {
        try await db.select().column("data").from("release_chunks").where("component", .equal, SQLBind(component))
            .where("version", .equal, SQLBind(version)).where("idx", .equal, SQLBind(index)).first()
            .map { try $0.decode(column: "data", as: ByteBuffer.self) }
    }

    static func markUploaded(component: String, version: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.update("releases").set("uploaded_at", to: SQLBind(at)).where("component", .equal, SQLBind(component))
            .where("version", .equal, SQLBind(version)).run()
    }

    struct Rollout: Sendable {
        var hostID: String
        var stage: String
        var at: Int64
    }

    static func rollouts(component: String, version: String, in db: any SQLDatabase) async throws -> [Rollout] {
        try await db.select().columns("host_id", "stage", "at").from("release_rollouts").where("component", .equal, SQLBind(component))
            .where("version", .equal, SQLBind(version)).orderBy("host_id").all()
            .map {
                Rollout(
                    hostID: try $0.decode(column: "host_id", as: String.self), stage: try $0.decode(column: "stage", as: String.self),
                    at: try $0.decode(column: "at", as: Int64.self))
            }
    }

    static func recordRollout(component: String, version: String, hostID: String, stage: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.delete(from: "release_rollouts").where("component", .equal, SQLBind(component)).where("version", .equal, SQLBind(version))
            .where("host_id", .equal, SQLBind(hostID)).run()
        try await db.insert(into: "release_rollouts").columns("component", "version", "host_id", "stage", "at")
            .values(SQLBind(component), SQLBind(version), SQLBind(hostID), SQLBind(stage), SQLBind(at)).run()
    }

    /// The newest update outcome event (`update_committed`, `update_reverted`, `update_refused`)
    /// a host posted for this component and version since `since`: its type and reason.
    static func latestOutcome(hostID: String, component: String, version: String, since: Int64, in db: any SQLDatabase) async throws -> (
        type: String, reason: String?
    )? {
        let rows = try await db.select().columns("type", "data").from("events").where("host_id", .equal, SQLBind(hostID))
            .where("type", .in, ["update_committed", "update_reverted", "update_refused"])
            .where("at", .greaterThanOrEqual, SQLBind(since)).orderBy("at", .descending).limit(50).all()
        for r in rows {
            let data = (try? JSONValue.parse(Data(try r.decode(column: "data", as: String.self).utf8)))?.objectValue ?? [:]
            guard data["component"]?.stringValue == component, data["version"]?.stringValue == version else { continue }
            return (try r.decode(column: "type", as: String.self), data["reason"]?.stringValue)
        }
        return nil
    }

    /// Every host id with a published desired state.
    static func hostsWithPublishedState(in db: any SQLDatabase) async throws -> [String] {
        try await db.select().distinct().column("host_id").from("desired_published").orderBy("host_id").all()
            .map { try $0.decode(column: "host_id", as: String.self) }
    }
}
