import FelhomCore
import FelhomHub
import FelhomSigning
import FelhomTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite struct SignedOpQueueTests {
    struct World {
        var host = "", hostKey = "", customer = "", customerKey = ""
    }

    func world(_ client: some TestClientProtocol, operatorPublicKey: String) async throws -> World {
        var w = World()
        let c = try await client.call(
            .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"a.example.hu"}"#)
        w.customer = c.json?["id"]?.stringValue ?? ""
        let h = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customer)","name":"nappali"}"#)
        w.host = h.json?["id"]?.stringValue ?? ""
        w.hostKey = h.json?["api_key"]?.stringValue ?? ""
        w.customerKey = try await client.call(.post, "/api/v1/customers/\(w.customer)/keys", key: operatorKey).json?["api_key"]?.stringValue ?? ""
        let k = try await client.call(.post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"\#(operatorPublicKey) ops@felhom"}"#)
        #expect(k.status == .created, "\(String(decoding: k.body, as: UTF8.self))")
        return w
    }

    func sign(_ blob: String, with key: SSHPrivateKey, namespace: String = OpVerifier.namespace) throws -> String {
        try key.sign(message: Array(blob.utf8), namespace: namespace).armored
    }

    func body(_ signature: String) -> String {
        String(decoding: JSONValue.object(["signature": .string(signature)]).serialized(), as: UTF8.self)
    }

    @Test(arguments: TestStores.kinds)
    func fullLifeCycleAndTheAgentCanVerifyWhatItGets(_ kind: HubStore.Kind) async throws {
        let op = SSHPrivateKey.generateEd25519(comment: "ops")
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, operatorPublicKey: op.publicKey.openSSHLine)
            let created = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.destroy"}"#)
            #expect(created.status == .created, "\(String(decoding: created.body, as: UTF8.self))")
            let id = created.json?["id"]?.stringValue ?? ""
            #expect(created.json?["status"] == "pending_signature")
            let summary = created.json?["summary"]?.stringValue ?? ""
            #expect(summary.contains("DESTROY") && summary.contains("Kiss Anna") && summary.contains("nappali"), "\(summary)")
            let blob = created.json?["blob"]?.stringValue ?? ""
            let parsed = try OpBlob(parsing: Array(blob.utf8))
            #expect(parsed.hostID == w.host && parsed.guestID == "101" && parsed.keyID == op.publicKey.fingerprint)
            #expect(try parsed.canonicalBytes() == Array(blob.utf8))
            // Pending list for the operator and the customer; nothing for the box yet.
            let pending = try await client.call(.get, "/api/v1/signed-ops?status=pending_signature", key: operatorKey)
            #expect(pending.json?["signed_ops"]?.arrayValue?.count == 1)
            #expect(try await client.call(.get, "/api/v1/signed-ops", key: w.customerKey).json?["signed_ops"]?.arrayValue?.count == 1)
            #expect(try await client.call(.post, "/api/v1/host-report", key: w.hostKey, body: sampleReport()).json?["has_signed_ops"] == false)
            let none = try await client.call(.get, "/api/v1/signed-ops/next", key: w.hostKey)
            #expect(none.json?["op"] == .null, "\(none.status) \(String(decoding: none.body, as: UTF8.self))")
            // Sign and upload.
            let signed = try await client.call(.post, "/api/v1/signed-ops/\(id)/signature", key: operatorKey, body: body(try sign(blob, with: op)))
            #expect(signed.json?["status"] == "signed", "\(String(decoding: signed.body, as: UTF8.self))")
            #expect(
                try await client.call(.post, "/api/v1/signed-ops/\(id)/signature", key: operatorKey, body: body(try sign(blob, with: op))).status
                    == .conflict)
            #expect(try await client.call(.post, "/api/v1/host-report", key: w.hostKey, body: sampleReport()).json?["has_signed_ops"] == true)
            #expect(try await client.call(.get, "/api/v1/control?after_generation=0&wait=5", key: w.hostKey).json?["has_signed_ops"] == true)
            // The box fetches it; the agent's own verifier accepts the delivered bytes.
            let next = try await client.call(.get, "/api/v1/signed-ops/next", key: w.hostKey)
            #expect(next.json?["op"]?["status"] == "delivered")
            let verifier = OpVerifier(signers: [PinnedSigner(name: "ops", key: op.publicKey)], hostID: w.host, nonces: InMemoryNonceStore())
            let verified = try verifier.verify(
                blob: Array((next.json?["op"]?["blob"]?.stringValue ?? "").utf8),
                signature: next.json?["op"]?["signature"]?.stringValue ?? "")
            #expect(verified.op.op == .guestDestroy)
            // Outcome.
            let done = try await client.call(.post, "/api/v1/signed-ops/\(id)/result", key: w.hostKey, body: #"{"outcome":"applied"}"#)
            #expect(done.json?["status"] == "applied")
            #expect(try await client.call(.post, "/api/v1/signed-ops/\(id)/result", key: w.hostKey, body: #"{"outcome":"applied"}"#).status == .ok)
            #expect(
                try await client.call(.post, "/api/v1/signed-ops/\(id)/result", key: w.hostKey, body: #"{"outcome":"rejected"}"#).status == .conflict)
            #expect(try await client.call(.post, "/api/v1/host-report", key: w.hostKey, body: sampleReport()).json?["has_signed_ops"] == false)
            let ev = try await client.call(.get, "/api/v1/events?type=op_applied", key: operatorKey)
            #expect(ev.json?["events"]?.arrayValue?.first?["data"]?["op_id"]?.stringValue == id)
        }
        await h.hub.store.close()
    }

    @Test func badSignaturesAreRefusedAndNothingChanges() async throws {
        let op = SSHPrivateKey.generateEd25519(comment: "ops")
        let stranger = SSHPrivateKey.generateEd25519(comment: "x")
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let w = try await world(client, operatorPublicKey: op.publicKey.openSSHLine)
            let a = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.destroy"}"#)
            let b = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(w.host)","guest_id":"102","op":"guest.destroy"}"#)
            let id = a.json?["id"]?.stringValue ?? ""
            let blobA = a.json?["blob"]?.stringValue ?? ""
            let blobB = b.json?["blob"]?.stringValue ?? ""
            // Unreadable: 400. Readable but not authorizing this op: 403 signature_refused.
            let cases: [(String, String, HTTPResponse.Status)] = [
                (try sign(blobA, with: stranger), "not a registered operator key", .forbidden),
                (try sign(blobB, with: op), "does not verify", .forbidden),
                (try sign(blobA, with: op, namespace: "file"), "namespace", .forbidden),
                ("-----BEGIN SSH SIGNATURE-----\nnope\n-----END SSH SIGNATURE-----", "not an SSH signature", .badRequest),
            ]
            for (sig, words, status) in cases {
                let r = try await client.call(.post, "/api/v1/signed-ops/\(id)/signature", key: operatorKey, body: body(sig))
                #expect(r.status == status)
                #expect(r.json?["error"]?["message"]?.stringValue?.contains(words) == true, "\(String(decoding: r.body, as: UTF8.self))")
            }
            #expect(try await client.call(.get, "/api/v1/signed-ops/\(id)", key: operatorKey).json?["status"] == "pending_signature")
            // Bad requests name the field.
            for (bodyText, path) in [
                (#"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.explode"}"#, "$.op"),
                (#"{"host_id":"\#(w.host)","guest_id":"web","op":"guest.destroy"}"#, "$.guest_id"),
                (#"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.rollback"}"#, "$.params.snapshot"),
                (#"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.destroy","ttl_seconds":5}"#, "$.ttl_seconds"),
            ] {
                let r = try await client.call(.post, "/api/v1/signed-ops", key: operatorKey, body: bodyText)
                #expect(
                    r.status == .badRequest && r.json?["error"]?["path"]?.stringValue == path,
                    "\(bodyText): \(String(decoding: r.body, as: UTF8.self))")
            }
            // A host that does not exist is not found (404), naming the field.
            let nope = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"nope","guest_id":"101","op":"guest.destroy"}"#)
            #expect(nope.status == .notFound && nope.json?["error"]?["path"] == "$.host_id")
            #expect(
                try await client.call(.post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"ssh-dss AAAA"}"#).status == .badRequest
            )
            let again = try await client.call(
                .post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"\#(op.publicKey.openSSHLine)"}"#)
            #expect(again.status == .conflict, "\(again.status) \(String(decoding: again.body, as: UTF8.self))")
        }
        await h.hub.store.close()
    }

    @Test func unsignedOpsExpire() async throws {
        let op = SSHPrivateKey.generateEd25519(comment: "ops")
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(.sqlite, clock: clock)
        try await h.app.test(.router) { client in
            let w = try await world(client, operatorPublicKey: op.publicKey.openSSHLine)
            let a = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey,
                body: #"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.destroy","ttl_seconds":600}"#)
            clock.advance(by: 601)
            let id = a.json?["id"]?.stringValue ?? ""
            #expect(try await client.call(.get, "/api/v1/signed-ops/\(id)", key: operatorKey).json?["status"] == "expired")
            let late = try await client.call(
                .post, "/api/v1/signed-ops/\(id)/signature", key: operatorKey, body: body(try sign(a.json?["blob"]?.stringValue ?? "", with: op)))
            #expect(late.status == .conflict)
            // The expiry is an event (once), mailed to the operator.
            #expect(try await h.hub.expireSignedOps() == 0, "already expired: no second event")
            let events = try await client.call(.get, "/api/v1/events?type=op_expired", key: operatorKey).json?["events"]?.arrayValue ?? []
            #expect(events.count == 1 && events.first?["data"]?["op_id"]?.stringValue == id)
        }
        await h.hub.store.close()
    }

    /// Issue 10 item 6: a box's reason with control characters or over 1,000 characters is stored
    /// sanitized (escaped, truncated), not refused — a refusal stopped the agent's cycle.
    @Test(arguments: TestStores.kinds)
    func aHostileReasonIsSanitizedNotRefused(_ kind: HubStore.Kind) async throws {
        let op = SSHPrivateKey.generateEd25519(comment: "ops")
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, operatorPublicKey: op.publicKey.openSSHLine)
            let created = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(w.host)","guest_id":"101","op":"guest.destroy"}"#)
            let id = created.json?["id"]?.stringValue ?? ""
            _ = try await client.call(
                .post, "/api/v1/signed-ops/\(id)/signature", key: operatorKey,
                body: body(try sign(created.json?["blob"]?.stringValue ?? "", with: op)))
            _ = try await client.call(.get, "/api/v1/signed-ops/next", key: w.hostKey)
            let reason = "failed: \u{1B}[31mboom\n" + String(repeating: "x", count: 5000)
            let r = try await client.call(
                .post, "/api/v1/signed-ops/\(id)/result", key: w.hostKey,
                body: String(decoding: JSONValue.object(["outcome": "rejected", "reason": .string(reason)]).serialized(), as: UTF8.self))
            #expect(r.status == .ok, "\(String(decoding: r.body, as: UTF8.self))")
            let stored = r.json?["reason"]?.stringValue ?? ""
            #expect(stored.count == 1000 && stored.hasPrefix("failed: \\u{1B}[31mboom\\u{A}") && stored.hasSuffix("..."))
        }
        await h.hub.store.close()
    }
}
