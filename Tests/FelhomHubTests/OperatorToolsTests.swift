import FelhomAPI
import FelhomCore
import FelhomSigning
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import FelhomHub

/// Issue 12: the operator's tools — cancel a queued op, remove a signing key, a host alive on its
/// first report.
@Suite struct OperatorToolsTests {
    func signature(_ blob: String, _ key: SSHPrivateKey) throws -> String {
        let armored = try key.sign(message: Array(blob.utf8), namespace: OpVerifier.namespace).armored
        return String(decoding: JSONValue.object(["signature": .string(armored)]).serialized(), as: UTF8.self)
    }

    @Test(arguments: TestStores.kinds)
    func cancelRemoveKeyAndFirstReport(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let customer =
                    try await client.call(
                        .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#
                    ).json?["id"]?.stringValue ?? ""
                let host = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(customer)","name":"box"}"#)
                let hostID = host.json?["id"]?.stringValue ?? ""
                let hostKey = host.json?["api_key"]?.stringValue ?? ""

                // A host is alive on its first report, not only after the next checker pass.
                #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)", key: operatorKey).json?["liveness"] == "unknown")
                #expect(try await client.call(.post, "/api/v1/host-report", key: hostKey, body: sampleReport()).status == .ok)
                #expect(try await client.call(.get, "/api/v1/hosts/\(hostID)", key: operatorKey).json?["liveness"] == "alive")

                let signer = SSHPrivateKey.generateEd25519(comment: "ops")
                let keyID =
                    try await client.call(
                        .post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"\#(signer.publicKey.openSSHLine)"}"#
                    ).json?["id"]?.stringValue ?? ""
                func queue(_ vmid: Int) async throws -> (id: String, blob: String) {
                    let r = try await client.call(
                        .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(hostID)","guest_id":"\#(vmid)","op":"guest.destroy"}"#)
                    return (r.json?["id"]?.stringValue ?? "", r.json?["blob"]?.stringValue ?? "")
                }

                // A key_id the hub does not know is refused at once (it could never sign an accepted op).
                let unknownKey = try await client.call(
                    .post, "/api/v1/signed-ops", key: operatorKey,
                    body: #"{"host_id":"\#(hostID)","guest_id":"150","op":"guest.destroy","key_id":"SHA256:nope"}"#)
                #expect(unknownKey.status == .conflict && unknownKey.json?["error"]?["code"] == "key_id_unknown")
                // Cancel a pending op: cancelled, an event, never delivered; a second cancel is a conflict.
                let pending = try await queue(150)
                let cancelled = try await client.call(.post, "/api/v1/signed-ops/\(pending.id)/cancel", key: operatorKey)
                #expect(cancelled.status == .ok && cancelled.json?["status"] == "cancelled")
                #expect(try await client.call(.post, "/api/v1/signed-ops/\(pending.id)/cancel", key: operatorKey).status == .conflict)
                #expect(
                    try await client.call(
                        .post, "/api/v1/signed-ops/\(pending.id)/signature", key: operatorKey, body: signature(pending.blob, signer)
                    ).status == .conflict)
                let events = try await client.call(.get, "/api/v1/events?type=op_cancelled", key: operatorKey).json?["events"]?.arrayValue ?? []
                #expect(events.count == 1 && events.first?["data"]?["op_id"]?.stringValue == pending.id)

                // A signed op can be cancelled until the host fetches it; then it is the agent's.
                let signedOp = try await queue(151)
                #expect(
                    try await client.call(
                        .post, "/api/v1/signed-ops/\(signedOp.id)/signature", key: operatorKey, body: signature(signedOp.blob, signer)
                    ).status == .ok)
                let delivered = try await client.call(.get, "/api/v1/signed-ops/next", key: hostKey)
                #expect(delivered.json?["op"]?["id"]?.stringValue == signedOp.id)
                let late = try await client.call(.post, "/api/v1/signed-ops/\(signedOp.id)/cancel", key: operatorKey)
                #expect(late.status == .conflict && late.json?["error"]?["code"] == "not_cancellable")

                // Listings carry the guest's name from the host's last report (vmid 100 is "web" there).
                let named = try await queue(100)
                #expect(try await client.call(.get, "/api/v1/signed-ops/\(named.id)", key: operatorKey).json?["guest_name"] == "web")
                _ = try await client.call(.post, "/api/v1/signed-ops/\(named.id)/cancel", key: operatorKey)

                // Two open ops for the same guest and operation flag each other; a cancelled one does not count.
                let first = try await queue(160)
                let second = try await queue(160)
                let flagged = try await client.call(.get, "/api/v1/signed-ops/\(second.id)", key: operatorKey).json
                #expect(flagged?["duplicate_of"] == .array([.string(first.id)]), "\(flagged ?? .null)")
                _ = try await client.call(.post, "/api/v1/signed-ops/\(first.id)/cancel", key: operatorKey)
                #expect(try await client.call(.get, "/api/v1/signed-ops/\(second.id)", key: operatorKey).json?["duplicate_of"] == nil)

                // Removing a signing key: listed no more, its signatures refused, an event; twice is 404.
                let removed = try await client.call(.delete, "/api/v1/operator-keys/\(keyID)", key: operatorKey)
                #expect(removed.status == .ok && removed.json?["fingerprint"]?.stringValue == signer.publicKey.fingerprint)
                #expect(try await client.call(.get, "/api/v1/operator-keys", key: operatorKey).json?["operator_keys"]?.arrayValue?.isEmpty == true)
                #expect(try await client.call(.delete, "/api/v1/operator-keys/\(keyID)", key: operatorKey).status == .notFound)
                let other = SSHPrivateKey.generateEd25519(comment: "second")
                _ = try await client.call(
                    .post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"\#(other.publicKey.openSSHLine)"}"#)
                let afterRemoval = try await queue(152)
                let refused = try await client.call(
                    .post, "/api/v1/signed-ops/\(afterRemoval.id)/signature", key: operatorKey, body: signature(afterRemoval.blob, signer))
                #expect(refused.status == .forbidden && refused.json?["error"]?["code"] == "signature_refused")
                #expect(
                    (try await client.call(.get, "/api/v1/events?type=operator_key_removed", key: operatorKey).json?["events"]?.arrayValue ?? [])
                        .count == 1)
            }
        }
    }

    /// A Prometheus scraper gets a key that reads /metrics and nothing else.
    @Test func aMetricsKeyReadsMetricsOnly() async throws {
        var settings = Hub.Settings()
        let metricsKey = "metrics-scraper-key-0123456789abcdef"
        settings.metricsKey = Secret(metricsKey)
        try await withHub(.sqlite, settings: settings) { h in
            try await h.app.test(.router) { client in
                let scraped = try await client.call(.get, "/metrics", key: metricsKey)
                #expect(scraped.status == .ok && String(decoding: scraped.body, as: UTF8.self).contains("felhom_hub_hosts"))
                #expect(try await client.call(.get, "/metrics", key: operatorKey).status == .ok)
                #expect(try await client.call(.get, "/metrics", key: "not-the-metrics-key-0123456789abcdef").status == .unauthorized)
                #expect(try await client.call(.get, "/api/v1/hosts", key: metricsKey).status == .unauthorized)
                #expect(try await client.call(.get, "/api/v1/customers", key: metricsKey).status == .unauthorized)
            }
        }
        var config = HubConfig()
        config.operatorKey = Secret(operatorKey)
        config.metricsKey = Secret("short")
        #expect(throws: ConfigError.self) { _ = try config.resolve() }
        config.metricsKey = Secret(operatorKey)
        #expect(throws: ConfigError.self) { _ = try config.resolve() }
    }
}
