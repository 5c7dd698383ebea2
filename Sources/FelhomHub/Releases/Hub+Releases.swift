import Crypto
import FelhomAPI
import FelhomCore
import FelhomSigning
import Foundation
import NIOCore
import SQLKit

/// Releases (SPEC §4 "Self-update"): the operator registers a manifest signed with a release key
/// (`felhom-release-v1`), uploads its asset, and rolls it out — canary hosts first, then the rest.
/// The hub checks what it can (the manifest parses and is canonical, the signature verifies with
/// the key it carries, the asset matches size and SHA-256) but is not trusted: the box verifies
/// the signature against its own pinned release keys before installing anything.
extension Hub {
    /// Registers a signed release. Idempotent for the same manifest and signature; 409
    /// `release_exists` for another release of the same component and version (releases never change).
    public func createRelease(_ body: NewRelease, by principal: Principal) async throws -> (ReleaseView, created: Bool) {
        guard principal == .operator else { throw HubError.forbidden("register releases (operator only)") }
        let bytes = Array(body.manifest.utf8)
        // The signature first, over the raw bytes (as the box does): only signed bytes are parsed.
        let signer: String
        do throws(SignatureError) {
            let sig = try SSHSignature(armored: body.signature)
            guard sig.namespace == ReleaseManifest.namespace else {
                throw SignatureError(.namespace, "signature is for namespace '\(sig.namespace)', not '\(ReleaseManifest.namespace)'")
            }
            try sig.verify(message: bytes)
            signer = sig.publicKey.fingerprint
        } catch {
            throw HubError.signatureRefused("the release signature does not verify over the manifest: \(error.message)")
        }
        let manifest: ReleaseManifest
        do { manifest = try ReleaseManifest(parsing: bytes) } catch {
            throw HubError.badRequest(error.message, path: "$.manifest.\(error.field)")
        }
        guard (try? manifest.canonicalBytes()) == bytes else {
            throw HubError.badRequest("must be the manifest's RFC 8785 canonical JSON, exactly as signed", path: "$.manifest")
        }
        let row = ReleasesTable.Row(
            component: manifest.component.rawValue, version: manifest.version, manifest: body.manifest, signature: body.signature,
            sha256: manifest.sha256, size: manifest.size, signer: signer, createdAt: now, uploadedAt: nil)
        let now = self.now
        let (stored, created) = try await store.transaction { db -> (ReleasesTable.Row, Bool) in
            if let existing = try await ReleasesTable.get(component: row.component, version: row.version, in: db) {
                guard existing.manifest == row.manifest && existing.signature == row.signature else {
                    throw HubError(
                        .conflict, "release_exists",
                        "\(row.component) \(row.version) is already registered with another manifest or signature (releases never change: publish a new version)"
                    )
                }
                return (existing, false)
            }
            try await ReleasesTable.insert(row, in: db)
            try await recordEvent(
                "release_created", customerID: nil,
                data: ["component": .string(row.component), "version": .string(row.version), "sha256": .string(row.sha256)], at: now, in: db)
            return (row, true)
        }
        return (Self.view(stored), created)
    }

    /// Stores a release's asset from `body`, streamed in chunks: at most the manifest's size is
    /// read, the SHA-256 must match at the end, and on any failure the chunks are dropped (the
    /// release stays without an asset). 409 `asset_exists` once uploaded (assets never change).
    public func uploadReleaseAsset<Body: AsyncSequence>(
        component: String, version: String, body: Body, by principal: Principal
    ) async throws -> ReleaseView where Body.Element == ByteBuffer {
        guard principal == .operator else { throw HubError.forbidden("upload release assets (operator only)") }
        guard let release = try await store.withDB({ db in try await ReleasesTable.get(component: component, version: version, in: db) }) else {
            throw HubError.notFound("release \(component) \(version)")
        }
        guard release.uploadedAt == nil else {
            throw HubError(.conflict, "asset_exists", "\(component) \(version) already has its asset (assets never change)")
        }
        try await store.withDB { db in try await ReleasesTable.deleteChunks(component: component, version: version, in: db) }
        var hasher = SHA256()
        var total: Int64 = 0
        var index: Int64 = 0
        var pending = ByteBuffer()
        do {
            for try await var piece in body {
                total += Int64(piece.readableBytes)
                guard total <= release.size else {
                    throw HubError(.contentTooLarge, "asset_mismatch", "the asset is larger than the manifest's \(release.size) bytes")
                }
                piece.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                pending.writeBuffer(&piece)
                while pending.readableBytes >= ReleasesTable.chunkSize {
                    let chunk = pending.readSlice(length: ReleasesTable.chunkSize)!
                    let i = index
                    try await store.withDB { db in
                        try await ReleasesTable.insertChunk(component: component, version: version, index: i, data: chunk, in: db)
                    }
                    index += 1
                    pending.discardReadBytes()
                }
            }
            if pending.readableBytes > 0 {
                let last = pending
                let i = index
                try await store.withDB { db in
                    try await ReleasesTable.insertChunk(component: component, version: version, index: i, data: last, in: db)
                }
            }
            let digest = Hex.encode(hasher.finalize())
            guard total == release.size else {
                throw HubError(.unprocessableContent, "asset_mismatch", "the asset has \(total) bytes, the manifest says \(release.size)")
            }
            guard digest == release.sha256 else {
                throw HubError(.unprocessableContent, "asset_mismatch", "the asset's SHA-256 is \(digest), the manifest says \(release.sha256)")
            }
        } catch {
            try? await store.withDB { db in try await ReleasesTable.deleteChunks(component: component, version: version, in: db) }
            throw error
        }
        let now = self.now
        try await store.withDB { db in try await ReleasesTable.markUploaded(component: component, version: version, at: now, in: db) }
        return try await self.release(component: component, version: version, by: principal)
    }

    /// One release (operator and host keys: a box fetches the manifest to verify it itself).
    public func release(component: String, version: String, by principal: Principal) async throws -> ReleaseView {
        switch principal {
        case .operator, .host: break
        case .customer, .guest: throw HubError.forbidden("read releases")
        }
        let (row, rollout) = try await store.withDB { db -> (ReleasesTable.Row?, [RolloutHost]) in
            guard let row = try await ReleasesTable.get(component: component, version: version, in: db) else { return (nil, []) }
            return (row, principal == .operator ? try await rolloutHosts(row, in: db) : [])
        }
        guard let row else { throw HubError.notFound("release \(component) \(version)") }
        var view = Self.view(row)
        if principal == .operator { view.rollout = rollout }
        return view
    }

    /// Every release, newest first per component, with its roll-out (operator only).
    public func releases(by principal: Principal) async throws -> [ReleaseView] {
        guard principal == .operator else { throw HubError.forbidden("list releases (operator only)") }
        return try await store.withDB { db in
            var out: [ReleaseView] = []
            for row in try await ReleasesTable.list(in: db) {
                var v = Self.view(row)
                v.rollout = try await rolloutHosts(row, in: db)
                out.append(v)
            }
            return out
        }
    }

    /// The asset's size and a reader of its chunks in order (operator and host keys); 404 until uploaded.
    public func releaseAsset(component: String, version: String, by principal: Principal) async throws -> (
        size: Int64, chunk: @Sendable (Int64) async throws -> ByteBuffer?
    ) {
        let view = try await release(component: component, version: version, by: principal)
        guard view.uploadedAt != nil else { throw HubError.notFound("the asset of release \(component) \(version)") }
        let store = self.store
        return (
            view.size,
            { index in try await store.withDB { db in try await ReleasesTable.chunk(component: component, version: version, index: index, in: db) } }
        )
    }

    /// A roll-out step: `canary` names the canary hosts; `all` publishes to every other host with a
    /// published desired state (or `hosts` only), refused with 409 `canary_pending` while a
    /// canary host does not run the version yet, and 409 `canary_failed` when one reverted or
    /// refused it. Each host's published desired state (and its draft, so a later publish keeps
    /// it) gets `versions[component] = version` under a new generation.
    public func rollout(component: String, version: String, request: RolloutRequest, by principal: Principal) async throws -> RolloutView {
        guard principal == .operator else { throw HubError.forbidden("roll out releases (operator only)") }
        guard ["canary", "all"].contains(request.stage) else { throw HubError.badRequest("must be canary or all", path: "$.stage") }
        if request.stage == "canary" && request.hosts == nil {
            throw HubError.badRequest("a canary stage names its hosts", path: "$.hosts")
        }
        if request.hosts?.isEmpty == true { throw HubError.badRequest("name at least one host (or leave hosts out for stage all)", path: "$.hosts") }
        let now = self.now
        let result = try await store.transaction { db -> RolloutView in
            guard let row = try await ReleasesTable.get(component: component, version: version, in: db) else {
                throw HubError.notFound("release \(component) \(version)")
            }
            guard row.uploadedAt != nil else {
                throw HubError(.conflict, "asset_missing", "upload the asset first: PUT /api/v1/releases/\(component)/\(version)/asset")
            }
            let already = try await rolloutHosts(row, in: db)
            var targets = request.hosts ?? []
            if request.stage == "all" {
                let canaries = already.filter { $0.stage == "canary" }
                if let failed = canaries.first(where: { $0.state == "failed" }) {
                    throw HubError(
                        .conflict, "canary_failed", "canary host \(failed.hostID) did not take \(version): \(failed.reason ?? "reverted")")
                }
                let waiting = canaries.filter { $0.state != "running" }.map(\.hostID)
                if !waiting.isEmpty {
                    throw HubError(
                        .conflict, "canary_pending", "canary hosts do not run \(version) yet: \(waiting.joined(separator: ", "))")
                }
                if request.hosts == nil { targets = try await ReleasesTable.hostsWithPublishedState(in: db) }
                targets.removeAll { h in canaries.contains { $0.hostID == h } }
            }
            var published: [RolloutView.PublishedHost] = []
            var skipped: [RolloutView.SkippedHost] = []
            for hostID in targets {
                guard let host = try await HostsTable.find(hostID, now: now, in: db) else {
                    skipped.append(.init(hostID: hostID, reason: "no such host"))
                    continue
                }
                guard var spec = try await publishedSpec(hostID, in: db)?.0 else {
                    skipped.append(.init(hostID: hostID, reason: "no published desired state"))
                    continue
                }
                if spec.versions[component] == version {
                    skipped.append(.init(hostID: hostID, reason: "already names \(version)"))
                    continue
                }
                spec.versions[component] = version
                if let draftText = try await DesiredTable.draft(hostID: hostID, in: db) {
                    var draft = try DesiredState.decode(Data(draftText.utf8))
                    draft.versions[component] = version
                    try await DesiredTable.saveDraft(hostID: hostID, spec: String(decoding: draft.encoded(), as: UTF8.self), at: now, in: db)
                }
                let gen = try await Self.storePublished(spec, hostID: hostID, at: now, in: db)
                try await ReleasesTable.recordRollout(component: component, version: version, hostID: hostID, stage: request.stage, at: now, in: db)
                try await recordEvent(
                    "release_rollout", hostID: hostID, customerID: host.customerID,
                    data: ["component": .string(component), "version": .string(version), "stage": .string(request.stage), "generation": .int(gen)],
                    at: now, in: db)
                published.append(.init(hostID: hostID, generation: gen))
            }
            return RolloutView(component: component, version: version, stage: request.stage, published: published, skipped: skipped)
        }
        for p in result.published { generations.notify(hostID: p.hostID) }
        return result
    }

    /// Where each host of a release's roll-out stands: `failed` when the box posted
    /// `update_reverted` or `update_refused` for it since, `running` when it posted
    /// `update_committed` (or, for the agent, its latest report names the version), else `pending`.
    func rolloutHosts(_ row: ReleasesTable.Row, in db: any SQLDatabase) async throws -> [RolloutHost] {
        var out: [RolloutHost] = []
        for r in try await ReleasesTable.rollouts(component: row.component, version: row.version, in: db) {
            let outcome = try await ReleasesTable.latestOutcome(hostID: r.hostID, component: row.component, version: row.version, since: r.at, in: db)
            var state = "pending"
            var reason: String?
            switch outcome?.type {
            case "update_committed": state = "running"
            case "update_reverted", "update_refused":
                state = "failed"
                reason = outcome?.reason
            default:
                if row.component == "agent", let report = try await ReportsTable.latestHostReport(hostID: r.hostID, in: db),
                    let doc = try? JSONValue.parse(Data(report.body.utf8)), doc.objectValue?["agent_version"]?.stringValue == row.version
                {
                    state = "running"
                }
            }
            out.append(RolloutHost(hostID: r.hostID, stage: r.stage, state: state, reason: reason))
        }
        return out
    }

    static func view(_ r: ReleasesTable.Row) -> ReleaseView {
        ReleaseView(
            component: r.component, version: r.version, sha256: r.sha256, size: r.size, manifest: r.manifest, signature: r.signature,
            signer: r.signer, createdAt: Date(timeIntervalSince1970: TimeInterval(r.createdAt)),
            uploadedAt: r.uploadedAt.map { Date(timeIntervalSince1970: TimeInterval($0)) })
    }
}
