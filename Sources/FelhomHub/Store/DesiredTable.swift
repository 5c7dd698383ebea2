import Foundation
import SQLKit

/// SQL of desired state: the operator's draft per host (`desired_drafts`) and every published
/// generation, kept durably (`desired_published`).
enum DesiredTable {
    /// The latest published spec text of a host, its generation and time.
    static func latestPublished(hostID: String, in db: any SQLDatabase) async throws -> (spec: String, generation: Int64, publishedAt: Int64)? {
        guard
            let row = try await db.select().columns("spec", "generation", "published_at").from("desired_published")
                .where("host_id", .equal, SQLBind(hostID)).orderBy("generation", .descending).limit(1).first()
        else { return nil }
        return (
            try row.decode(column: "spec", as: String.self), try row.decode(column: "generation", as: Int64.self),
            try row.decode(column: "published_at", as: Int64.self)
        )
    }

    static func draft(hostID: String, in db: any SQLDatabase) async throws -> String? {
        try await db.select().column("spec").from("desired_drafts").where("host_id", .equal, SQLBind(hostID)).first()?
            .decode(column: "spec", as: String.self)
    }

    static func saveDraft(hostID: String, spec: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "desired_drafts").columns("host_id", "spec", "updated_at")
            .values(SQLBind(hostID), SQLBind(spec), SQLBind(at))
            .onConflict(with: ["host_id"]) { $0.set(excludedValueOf: "spec").set(excludedValueOf: "updated_at") }
            .run()
    }

    static func insertPublished(hostID: String, generation: Int64, spec: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "desired_published").columns("host_id", "generation", "spec", "published_at")
            .values(SQLBind(hostID), SQLBind(generation), SQLBind(spec), SQLBind(at)).run()
    }
}
