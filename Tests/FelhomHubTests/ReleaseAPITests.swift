import Crypto
import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomSigning
import FelhomTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Signed releases through the API on SQLite and PostgreSQL: registration (signature, canonical
/// bytes, immutability), the chunked asset upload with its size and SHA-256 checks, the download,
/// and the staged roll-out (canary first; the rest only after the canaries run it).
@Suite struct ReleaseAPITests {
    static let key = SSHPrivateKey.generateEd25519(comment: "release")

    static func signed(
        _ asset: [UInt8], version: String, component: ReleaseManifest.Component = .agent, namespace: String = ReleaseManifest.namespace
    )
        throws -> (manifest: String, body: String)
    {
        let digest = SHA256.hash(data: asset).map { String(format: "%02x", $0) }.joined()
        let m = ReleaseManifest(
            component: component, version: version, sha256: digest, size: Int64(asset.count), createdAt: Date(timeIntervalSince1970: 1_790_000_000))
        let bytes = try m.canonicalBytes()
        let sig = try key.sign(message: bytes, namespace: namespace).armored
        let body = JSONValue.object(["manifest": .string(String(decoding: bytes, as: UTF8.self)), "signature": .string(sig)]).serialized()
        return (String(decoding: bytes, as: UTF8.self), String(decoding: body, as: UTF8.self))
    }

    func upload(_ client: some TestClientProtocol, _ path: String, _ bytes: [UInt8]) async throws -> Reply {
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(operatorKey)"
        headers[.contentType] = "application/octet-stream"
        return try await client.execute(uri: path, method: .put, headers: headers, body: ByteBuffer(bytes: bytes)) { r in
            Reply(status: r.status, body: Data(r.body.readableBytesView))
        }
    }

    @Test(arguments: TestStores.kinds)
    func aSignedReleaseIsRegisteredOnceAndItsAssetMustMatch(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let c =
                    try await client.call(
                        .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"kiss.example.hu"}"#
                    ).json?["id"]?.stringValue ?? ""
                let hostKey =
                    try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c)","name":"box"}"#).json?["api_key"]?
                    .stringValue ?? ""
                // 9 MiB + 5 bytes: three chunks.
                let asset = (0..<(9 << 20) + 5).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                let (manifest, body) = try Self.signed(asset, version: "1.4.0")
                let created = try await client.call(.post, "/api/v1/releases", key: operatorKey, body: body)
                #expect(created.status == .created, "\(String(decoding: created.body, as: UTF8.self))")
                #expect(created.json?["signer"]?.stringValue == Self.key.publicKey.fingerprint && created.json?["uploaded_at"] == nil)
                #expect(try await client.call(.post, "/api/v1/releases", key: operatorKey, body: body).status == .ok)
                // Same version, another asset: releases never change.
                let (_, other) = try Self.signed([1, 2, 3], version: "1.4.0")
                let exists = try await client.call(.post, "/api/v1/releases", key: operatorKey, body: other)
                #expect(exists.status == .conflict && exists.json?["error"]?["code"] == "release_exists")
                // An op-namespace signature is not a release signature.
                let (_, wrongNS) = try Self.signed([1], version: "1.5.0", namespace: OpVerifier.namespace)
                let ns = try await client.call(.post, "/api/v1/releases", key: operatorKey, body: wrongNS)
                #expect(ns.status == .forbidden && ns.json?["error"]?["code"] == "signature_refused", "\(String(decoding: ns.body, as: UTF8.self))")
                // A tampered manifest (size changed after signing) does not verify.
                let (m, good) = try Self.signed([1], version: "1.6.0")
                let tampered = good.replacingOccurrences(of: #"\"size\":1"#, with: #"\"size\":2"#)
                #expect(tampered != good && m.contains(#""size":1"#))
                #expect(
                    try await client.call(.post, "/api/v1/releases", key: operatorKey, body: tampered).json?["error"]?["code"] == "signature_refused")
                // Signed but not canonical (a space): refused, naming the manifest.
                let spacedText = m.replacingOccurrences(of: #"{"component""#, with: #"{ "component""#)
                let spacedSig = try Self.key.sign(message: Array(spacedText.utf8), namespace: ReleaseManifest.namespace).armored
                let spaced = String(
                    decoding: JSONValue.object(["manifest": .string(spacedText), "signature": .string(spacedSig)]).serialized(), as: UTF8.self)
                let nc = try await client.call(.post, "/api/v1/releases", key: operatorKey, body: spaced)
                #expect(nc.status == .badRequest && nc.json?["error"]?["path"]?.stringValue?.hasPrefix("$.manifest") == true)

                let path = "/api/v1/releases/agent/1.4.0/asset"
                #expect(try await client.call(.get, path, key: operatorKey).status == .notFound)
                var corrupt = asset
                corrupt[5 << 20] ^= 0xFF
                let bad = try await upload(client, path, corrupt)
                #expect(bad.status == .unprocessableContent && bad.json?["error"]?["code"] == "asset_mismatch")
                #expect(try await client.call(.get, path, key: operatorKey).status == .notFound, "a failed upload keeps nothing")
                let short = try await upload(client, path, Array(asset.dropLast()))
                #expect(short.status == .unprocessableContent)
                let long = try await upload(client, path, asset + [0])
                #expect(long.status == .contentTooLarge)
                let ok = try await upload(client, path, asset)
                #expect(ok.status == .ok && ok.json?["uploaded_at"] != nil, "\(String(decoding: ok.body, as: UTF8.self))")
                #expect(try await upload(client, path, asset).json?["error"]?["code"] == "asset_exists")
                let down = try await client.call(.get, path, key: hostKey)
                #expect(down.status == .ok && [UInt8](down.body) == asset)
                let view = try await client.call(.get, "/api/v1/releases/agent/1.4.0", key: hostKey)
                #expect(view.json?["manifest"]?.stringValue == manifest, "the signed bytes, verbatim")
            }
        }
    }

    @Test(arguments: TestStores.kinds)
    func theRestWaitForTheCanariesAndAFailedCanaryStopsTheRollout(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let c =
                    try await client.call(
                        .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"kiss.example.hu"}"#
                    ).json?["id"]?.stringValue ?? ""
                var hosts: [(id: String, key: String)] = []
                for name in ["a", "b", "c"] {
                    let r = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c)","name":"\#(name)"}"#)
                    let (id, key) = (r.json?["id"]?.stringValue ?? "", r.json?["api_key"]?.stringValue ?? "")
                    hosts.append((id, key))
                    #expect(try await client.call(.put, "/api/v1/hosts/\(id)/desired", key: operatorKey, body: #"{"guests":[]}"#).status == .ok)
                    #expect(try await client.call(.post, "/api/v1/hosts/\(id)/desired/publish", key: operatorKey).status == .ok)
                }
                let asset: [UInt8] = Array("#!/bin/sh\necho agent\n".utf8)
                for version in ["2.0.0", "2.1.0"] {
                    let (_, body) = try Self.signed(asset + Array(version.utf8), version: version)
                    #expect(try await client.call(.post, "/api/v1/releases", key: operatorKey, body: body).status == .created)
                }
                let early = try await client.call(
                    .post, "/api/v1/releases/agent/2.0.0/rollout", key: operatorKey, body: #"{"stage":"canary","hosts":["\#(hosts[0].id)"]}"#)
                #expect(early.json?["error"]?["code"] == "asset_missing")
                for version in ["2.0.0", "2.1.0"] {
                    #expect(try await upload(client, "/api/v1/releases/agent/\(version)/asset", asset + Array(version.utf8)).status == .ok)
                }
                let canary = try await client.call(
                    .post, "/api/v1/releases/agent/2.0.0/rollout", key: operatorKey, body: #"{"stage":"canary","hosts":["\#(hosts[0].id)"]}"#)
                #expect(canary.status == .ok && canary.json?["published"]?.arrayValue?.count == 1, "\(String(decoding: canary.body, as: UTF8.self))")
                let desired = try await client.call(.get, "/api/v1/hosts/\(hosts[0].id)/desired", key: hosts[0].key)
                #expect(desired.json?["spec"]?["versions"]?["agent"] == "2.0.0" && desired.json?["generation"] == 2)
                let untouched = try await client.call(.get, "/api/v1/hosts/\(hosts[1].id)/desired", key: hosts[1].key)
                #expect(untouched.json?["spec"]?["versions"]?["agent"] == nil)
                // The rest wait until the canary runs it.
                let wait = try await client.call(.post, "/api/v1/releases/agent/2.0.0/rollout", key: operatorKey, body: #"{"stage":"all"}"#)
                #expect(wait.status == .conflict && wait.json?["error"]?["code"] == "canary_pending")
                #expect(wait.json?["error"]?["message"]?.stringValue?.contains(hosts[0].id) == true)
                let committed =
                    #"{"type":"update_committed","severity":"info","data":{"component":"agent","version":"2.0.0","previous_version":"1.0.0"}}"#
                #expect(try await client.call(.post, "/api/v1/events", key: hosts[0].key, body: committed).status == .created)
                let all = try await client.call(.post, "/api/v1/releases/agent/2.0.0/rollout", key: operatorKey, body: #"{"stage":"all"}"#)
                #expect(
                    all.status == .ok
                        && Set(all.json?["published"]?.arrayValue?.compactMap { $0["host_id"]?.stringValue } ?? []) == [hosts[1].id, hosts[2].id])
                let list = try await client.call(.get, "/api/v1/releases", key: operatorKey)
                let r200 = list.json?["releases"]?.arrayValue?.first { $0["version"] == "2.0.0" }
                #expect(r200?["rollout"]?.arrayValue?.first { $0["host_id"]?.stringValue == hosts[0].id }?["state"] == "running")
                #expect(r200?["rollout"]?.arrayValue?.first { $0["host_id"]?.stringValue == hosts[1].id }?["state"] == "pending")

                // 2.1.0: the canary reverts it; the rest are never given it.
                _ = try await client.call(
                    .post, "/api/v1/releases/agent/2.1.0/rollout", key: operatorKey, body: #"{"stage":"canary","hosts":["\#(hosts[0].id)"]}"#)
                let reverted =
                    #"{"type":"update_reverted","severity":"warning","data":{"component":"agent","version":"2.1.0","reason":"2.1.0 did not report healthy within 300 s"}}"#
                #expect(try await client.call(.post, "/api/v1/events", key: hosts[0].key, body: reverted).status == .created)
                let stopped = try await client.call(.post, "/api/v1/releases/agent/2.1.0/rollout", key: operatorKey, body: #"{"stage":"all"}"#)
                #expect(stopped.status == .conflict && stopped.json?["error"]?["code"] == "canary_failed")
                #expect(stopped.json?["error"]?["message"]?.stringValue?.contains("did not report healthy") == true)
                let b = try await client.call(.get, "/api/v1/hosts/\(hosts[1].id)/desired", key: hosts[1].key)
                #expect(b.json?["spec"]?["versions"]?["agent"] == "2.0.0")
            }
        }
    }
}
