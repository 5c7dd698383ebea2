import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import Testing

/// The host's Cloudflare tunnel connector token (issue 20): sealed at rest, named by fingerprint
/// to the operator, handed in clear only to the host's own key (enrollment, recovery enrollment,
/// its own bundle and `GET …/tunnel-token`).
@Suite struct TunnelTokenTests {
    /// A well-formed connector token (base64 JSON with a, t, s) whose secret is a marker.
    static let sampleToken = connectorToken(tunnel: "6ff42ae2-765d-4adf-8112-31c55c1551ef", secret: "c2VjcmV0LXR1bm5lbC1tYXJrZXItMDAx")
    static let secretsKey = Data((0..<32).map { UInt8($0 * 11 & 0xFF) }).base64EncodedString()

    static func connectorToken(tunnel: String, secret: String) -> String {
        Data(#"{"a":"0123456789abcdef0123456789abcdef","t":"\#(tunnel)","s":"\#(secret)"}"#.utf8).base64EncodedString()
    }

    static func settings() -> Hub.Settings {
        var settings = Hub.Settings()
        settings.secretsKey = Secret(secretsKey)
        return settings
    }

    @Test(arguments: TestStores.kinds)
    func sealedAtRestAndHandedOnlyToTheHostsOwnKey(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind, settings: Self.settings())
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let cid = c.json?["id"]?.stringValue ?? ""
            let host = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"nappali"}"#)
            let other = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"konyha"}"#)
            let hostID = host.json?["id"]?.stringValue ?? ""
            let otherKey = other.json?["api_key"]?.stringValue ?? ""
            // Nothing set yet: the box's enrollment carries no token.
            let none = try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey)
            #expect(none.status == .ok && none.json?["set"] == false && none.json?["connector_token"] == nil)

            let put = try await client.call(
                .put, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(Self.sampleToken)"}"#)
            #expect(put.status == .ok, "\(put.bodyText)")
            let fingerprint = put.json?["fingerprint"]?.stringValue ?? ""
            #expect(fingerprint.hasPrefix("sha256:") && fingerprint.count == 7 + 16)
            #expect(put.json?["tunnel_id"] == "6ff42ae2-765d-4adf-8112-31c55c1551ef" && put.json?["connector_token"] == nil)
            #expect(!put.bodyText.contains("c2VjcmV0LXR1bm5lbC1tYXJrZXItMDAx") && !put.bodyText.contains(Self.sampleToken))

            // At rest: sealed, neither the token nor its secret readable in the row.
            let rows = try await h.hub.store.withDB { db in try await db.raw("SELECT * FROM dr_records").all() }
            #expect(rows.count == 1)
            for row in rows {
                for column in row.allColumns {
                    let text = (try? row.decode(column: column, as: String?.self)).flatMap { $0 } ?? ""
                    #expect(!text.contains(Self.sampleToken) && !text.contains("c2VjcmV0LXR1bm5lbC1tYXJrZXItMDAx"), "\(column)")
                }
            }

            // The operator sees which token, never the token; another host finds nothing.
            let asOperator = try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey)
            #expect(asOperator.json?["set"] == true && asOperator.json?["fingerprint"]?.stringValue == fingerprint)
            #expect(asOperator.json?["connector_token"] == nil)
            #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: otherKey).status == .notFound)
            let opBundle = try await client.call(.get, "/api/v1/recovery/\(hostID)", key: operatorKey)
            #expect(opBundle.json?["tunnel"]?["set"] == true && opBundle.json?["tunnel"]?["connector_token"] == nil)
            #expect(!opBundle.bodyText.contains(Self.sampleToken))

            // Enrollment hands it to the box.
            let t = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey)
            let e = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(t.json?["token"]?.stringValue ?? "")"}"#)
            #expect(e.status == .created && e.json?["tunnel_token"]?.stringValue == Self.sampleToken)
            let hostKey = e.json?["api_key"]?.stringValue ?? ""
            let own = try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: hostKey)
            #expect(own.json?["connector_token"]?.stringValue == Self.sampleToken)
            let ownBundle = try await client.call(.get, "/api/v1/recovery/\(hostID)", key: hostKey)
            #expect(ownBundle.json?["tunnel"]?["connector_token"]?.stringValue == Self.sampleToken)

            // A recovery enrollment (the replacement box) gets the same token.
            let r = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey, body: #"{"recovery":true}"#)
            let re = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(r.json?["token"]?.stringValue ?? "")"}"#)
            #expect(re.status == .created && re.json?["recovery"] == true && re.json?["tunnel_token"]?.stringValue == Self.sampleToken)

            // Replaced, then removed: events name fingerprints, never the token.
            let rotated = Self.connectorToken(tunnel: "0b8b7e4e-8d2b-4c55-9a40-1f3c0d7e9a11", secret: "cm90YXRlZC1zZWNyZXQtMDAy")
            let put2 = try await client.call(
                .put, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(rotated)"}"#)
            #expect(put2.json?["fingerprint"]?.stringValue != fingerprint)
            let removed = try await client.call(.delete, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey)
            #expect(removed.status == .ok && removed.json?["set"] == false)
            #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey).json?["set"] == false)
            let events = try await client.call(.get, "/api/v1/events?host_id=\(hostID)", key: operatorKey)
            let types = events.json?["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue } ?? []
            #expect(types.filter { $0 == "tunnel_token_set" }.count == 2 && types.contains("tunnel_token_removed"), "\(types)")
            #expect(!events.bodyText.contains(Self.sampleToken) && !events.bodyText.contains(rotated))
        }
        await h.hub.store.close()
    }

    @Test func badTokensAreRefusedWithoutEchoingThem() async throws {
        let h = try await HubHarness.make(.sqlite, settings: Self.settings())
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let host = try await client.call(
                .post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c.json?["id"]?.stringValue ?? "")","name":"b"}"#)
            let hostID = host.json?["id"]?.stringValue ?? ""
            // A Cloudflare API token (40 characters) is the classic mistake: said, and not echoed.
            let apiToken = "Xk3v9QpL2mN7rT5wY8zA1bC4dE6fG0hJ2kL4mN6p"
            let notBase64JSON = Data("not json at all".utf8).base64EncodedString()
            let badTunnel = Self.connectorToken(tunnel: "not-a-uuid", secret: "c2VjcmV0")
            for (token, says) in [
                (apiToken, "not a Cloudflare API token"), (notBase64JSON, "connector token"), (badTunnel, "UUID"), ("has space", "base64"),
                ("", "1…4096"),
            ] {
                let r = try await client.call(
                    .put, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(token)"}"#)
                #expect(r.status == .badRequest && r.bodyText.contains(says) && r.json?["error"]?["path"] == "$.connector_token", "\(r.bodyText)")
                #expect(token.isEmpty || !r.bodyText.contains(token))
            }
            let extra = try await client.call(
                .put, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(Self.sampleToken)","x":1}"#)
            #expect(extra.status == .badRequest && extra.json?["error"]?["path"] == "$.x")
            let unknownHost = try await client.call(
                .put, "/api/v1/hosts/hst_nope/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(Self.sampleToken)"}"#)
            #expect(unknownHost.status == .notFound)
            // Nothing was stored by any of them.
            #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey).json?["set"] == false)
        }
        await h.hub.store.close()
    }

    @Test func sealedRowsAreBoundToTheirHost() async throws {
        let h = try await HubHarness.make(.sqlite, settings: Self.settings())
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let cid = c.json?["id"]?.stringValue ?? ""
            let a = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"a"}"#)
            let b = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"b"}"#)
            let (hostA, hostB) = (a.json?["id"]?.stringValue ?? "", b.json?["id"]?.stringValue ?? "")
            let keyB = b.json?["api_key"]?.stringValue ?? ""
            _ = try await client.call(
                .put, "/api/v1/hosts/\(hostA)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(Self.sampleToken)"}"#)
            _ = try await client.call(
                .put, "/api/v1/hosts/\(hostB)/tunnel-token", key: operatorKey,
                body: #"{"connector_token":"\#(Self.connectorToken(tunnel: "0b8b7e4e-8d2b-4c55-9a40-1f3c0d7e9a11", secret: "Yg=="))"}"#)
            // Someone with the database copies A's sealed token onto B's row: B cannot open it.
            try await h.hub.store.withDB { db in
                try await db.raw(
                    "UPDATE dr_records SET tunnel_token_sealed = (SELECT tunnel_token_sealed FROM dr_records WHERE host_id = \(bind: hostA)) WHERE host_id = \(bind: hostB)"
                ).run()
            }
            let r = try await client.call(.get, "/api/v1/hosts/\(hostB)/tunnel-token", key: keyB)
            #expect(r.status == .internalServerError && r.json?["error"]?["code"] == "secrets_unreadable" && !r.bodyText.contains(Self.sampleToken))
        }
        await h.hub.store.close()
    }

    @Test func withoutASecretsKeyNothingIsStored() async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let host = try await client.call(
                .post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c.json?["id"]?.stringValue ?? "")","name":"b"}"#)
            let hostID = host.json?["id"]?.stringValue ?? ""
            let r = try await client.call(
                .put, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey, body: #"{"connector_token":"\#(Self.sampleToken)"}"#)
            #expect(r.status == .conflict && r.json?["error"]?["code"] == "secrets_key_unset")
            #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)/tunnel-token", key: operatorKey).json?["set"] == false)
        }
        await h.hub.store.close()
    }
}
