import FelhomCore
import FelhomHub
import FelhomSigning
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SQLKit
import Testing

/// The string values of `key` in each object. (A plain loop: a `compactMap` closure over
/// `JSONValue` subscripts picked up the wrong overload in this module.)
func field(_ key: String, of items: [JSONValue]) -> [String] {
    var out: [String] = []
    for item in items {
        if case .object(let o) = item, case .string(let s)? = o[key] { out.append(s) }
    }
    return out
}

@Suite struct HubAPITests {
    /// A world with two customers, each with a host, a guest and a customer key.
    struct World {
        var customerA = "", customerB = "", hostA = "", hostB = "", guestA = ""
        var hostKeyA = "", hostKeyB = "", guestKeyA = "", customerKeyA = "", revokedKey = ""
    }

    func world(_ client: some TestClientProtocol, _ hub: Hub) async throws -> World {
        var w = World()
        func id(_ r: Reply, _ k: String = "id") -> String { r.json?[k]?.stringValue ?? "" }
        let a = try await client.call(
            .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"anna@example.hu","domain":"kiss.example.hu"}"#)
        #expect(a.status == .created)
        w.customerA = id(a)
        w.customerB = id(
            try await client.call(
                .post, "/api/v1/customers", key: operatorKey,
                body: #"{"name":"Nagy Béla","email":"bela@example.hu","domain":"nagy.example.hu","language":"en"}"#))
        let ha = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customerA)","name":"box-a"}"#)
        w.hostA = id(ha)
        w.hostKeyA = id(ha, "api_key")
        let hb = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customerB)","name":"box-b"}"#)
        w.hostB = id(hb)
        w.hostKeyB = id(hb, "api_key")
        let g = try await client.call(.post, "/api/v1/hosts/\(w.hostA)/guests", key: w.hostKeyA, body: #"{"name":"apps"}"#)
        #expect(g.status == .created)
        w.guestA = id(g)
        w.guestKeyA = id(g, "api_key")
        w.customerKeyA = id(try await client.call(.post, "/api/v1/customers/\(w.customerA)/keys", key: operatorKey), "api_key")
        let extra = try await client.call(.post, "/api/v1/hosts/\(w.hostA)/guests", key: operatorKey, body: #"{"name":"old"}"#)
        w.revokedKey = id(extra, "api_key")
        try await hub.keys.revoke(subjectID: id(extra))
        return w
    }

    /// Every route × every key kind (none, revoked, operator, customer, host, guest, other customer's host).
    @Test(arguments: TestStores.kinds)
    func accessMatrix(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            let keys: [(String, String?)] = [
                ("none", nil), ("revoked", w.revokedKey), ("operator", operatorKey), ("customer", w.customerKeyA),
                ("host", w.hostKeyA), ("guest", w.guestKeyA), ("otherHost", w.hostKeyB),
            ]
            let signer = SSHPrivateKey.generateEd25519(comment: "ops")
            let signerKeyID =
                try await client.call(.post, "/api/v1/operator-keys", key: operatorKey, body: #"{"public_key":"\#(signer.publicKey.openSSHLine)"}"#)
                .json?["id"]?.stringValue ?? ""
            let opA =
                try await client.call(
                    .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(w.hostA)","guest_id":"150","op":"guest.destroy"}"#
                ).json?["id"]?.stringValue ?? ""
            typealias Row = (HTTPRequest.Method, String, String?, [String: HTTPResponse.Status])
            let customerBody = #"{"name":"X","email":"x@example.hu","domain":"x.example.hu"}"#
            var table: [Row] = [
                (
                    .get, "/healthz", nil,
                    ["none": .ok, "revoked": .ok, "operator": .ok, "customer": .ok, "host": .ok, "guest": .ok, "otherHost": .ok]
                ),
                (
                    .get, "/openapi.yaml", nil,
                    ["none": .ok, "revoked": .ok, "operator": .ok, "customer": .ok, "host": .ok, "guest": .ok, "otherHost": .ok]
                ),
                (
                    .get, "/metrics", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers", customerBody,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/customers", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .forbidden, "guest": .forbidden,
                        "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/customers/\(w.customerA)", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .forbidden, "guest": .forbidden,
                        "otherHost": .forbidden,
                    ]
                ),
                (
                    .put, "/api/v1/customers/\(w.customerA)/notifications", #"{"types":["node_down"]}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .forbidden, "guest": .forbidden,
                        "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerA)/keys", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/hosts", #"{"customer_id":"\#(w.customerA)","name":"n"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/hosts", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .ok,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .ok,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .post, "/api/v1/hosts/\(w.hostA)/guests", #"{"name":"g"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .created,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/desired", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .put, "/api/v1/hosts/\(w.hostA)/desired", sampleDesired,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/hosts/\(w.hostA)/desired/publish", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    // The published sample has no backup storage: the operator is told so (409).
                    .post, "/api/v1/hosts/\(w.hostA)/requests", #"{"kind":"backup","vmid":100}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/drift", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/capacity", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .get, "/api/v1/customers/\(w.customerA)/quotas", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .put, "/api/v1/customers/\(w.customerA)/quotas", #"{"max_guests":500}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    // The world's hosts have not reported: no capacity known, so 409 no_capacity for the operator.
                    .post, "/api/v1/customers/\(w.customerA)/guests", #"{"name":"placed","cpu":1,"memory_mb":512,"disk_gb":4}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/releases", #"{"manifest":"{}","signature":"x"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/releases", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/releases/agent/9.9.9", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .notFound, "customer": .forbidden, "host": .notFound,
                        "guest": .forbidden, "otherHost": .notFound,
                    ]
                ),
                (
                    .get, "/api/v1/releases/agent/9.9.9/asset", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .notFound, "customer": .forbidden, "host": .notFound,
                        "guest": .forbidden, "otherHost": .notFound,
                    ]
                ),
                (
                    .put, "/api/v1/releases/agent/9.9.9/asset", "binary",
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .notFound, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/releases/agent/9.9.9/rollout", #"{"stage":"all"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .notFound, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/host-report", sampleReport(),
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .ok,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/report", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .post, "/api/v1/guest-report", sampleGuestReport,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .forbidden,
                        "guest": .ok, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/control", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .ok,
                    ]
                ),
                (
                    .post, "/api/v1/events", #"{"type":"backup_completed"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .created,
                        "guest": .forbidden, "otherHost": .created,
                    ]
                ),
                (
                    .put, "/api/v1/customers/\(w.customerA)/geo", #"{"zone_id":"023e105f4ecef8ad9ca31a8372d0c353","countries":["HU"]}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .delete, "/api/v1/customers/\(w.customerA)/geo", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerA)/geo/remove-all", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .put, "/api/v1/customers/\(w.customerA)/config-overrides", #"{"watchdog":{"interval_seconds":30}}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    // This hub has no secrets_key: the operator's upload is a 409 naming it.
                    .put, "/api/v1/guests/\(w.guestA)/secrets/platform", #"{"secrets":{"A":"1"}}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/guests/\(w.guestA)/secrets", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden, "guest": .ok,
                        "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/guests/\(w.guestA)/config", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden, "guest": .ok,
                        "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerB)/passphrase", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .put, "/api/v1/recovery/\(w.hostA)", #"{"pbs_namespace":"customers/a"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    // A host reads its own bundle (escrow drill, re-enrollment); another host finds nothing.
                    .get, "/api/v1/recovery/\(w.hostA)", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .notFound,
                    ]
                ),
                (
                    // This world's hub has no secrets_key: the operator may, the hub cannot seal (409).
                    .put, "/api/v1/hosts/\(w.hostA)/tunnel-token", #"{"connector_token":"\#(TunnelTokenTests.sampleToken)"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .conflict, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/tunnel-token", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .notFound,
                    ]
                ),
                (
                    .delete, "/api/v1/hosts/\(w.hostA)/tunnel-token", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/volume-snapshots", VolumeSnapshotTests.sampleJSON,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .ok,
                    ]
                ),
                (
                    .get, "/api/v1/hosts/\(w.hostA)/volume-snapshots", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .post, "/api/v1/hosts/\(w.hostA)/volume-snapshots/deleted", #"{"snapshot_ids":[]}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/recovery/box", #"{"storage_manifest":[]}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .ok,
                    ]
                ),
                (
                    .post, "/api/v1/retrieve", #"{"domain":"nobody.example.hu","passphrase":"a-b-c-d","what":"recovery"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .unauthorized, "customer": .unauthorized, "host": .unauthorized,
                        "guest": .tooManyRequests, "otherHost": .tooManyRequests,
                    ]
                ),  // keyless: one client, 5 failures, then locked
                (
                    .post, "/api/v1/hosts/\(w.hostA)/enrollment", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/enroll", #"{"token":"fh_enroll_nope"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .unauthorized, "customer": .unauthorized, "host": .unauthorized,
                        "guest": .unauthorized, "otherHost": .unauthorized,
                    ]
                ),
                (
                    .post, "/api/v1/operator-keys",
                    #"{"public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/operator-keys", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/signed-ops",
                    #"{"host_id":"\#(w.hostA)","guest_id":"150","op":"guest.destroy","key_id":"\#(signer.publicKey.fingerprint)"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .created, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .get, "/api/v1/signed-ops", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .ok,
                    ]
                ),
                (
                    .get, "/api/v1/signed-ops/next", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .ok,
                        "guest": .forbidden, "otherHost": .ok,
                    ]
                ),
                (
                    .get, "/api/v1/signed-ops/\(opA)", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .notFound,
                    ]
                ),
                (
                    .post, "/api/v1/signed-ops/\(opA)/signature", #"{"signature":"x"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .badRequest, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/signed-ops/\(opA)/result", #"{"outcome":"bogus"}"#,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .forbidden, "customer": .forbidden, "host": .badRequest,
                        "guest": .forbidden, "otherHost": .notFound,
                    ]
                ),
                (
                    .get, "/api/v1/events", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .ok, "host": .ok, "guest": .forbidden,
                        "otherHost": .ok,
                    ]
                ),
                // The kill switch, operator only; each pair leaves the world as it was.
                (
                    .post, "/api/v1/hosts/\(w.hostA)/block", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/hosts/\(w.hostA)/unblock", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerA)/suspend", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerA)/resume", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                // Changes to the world, operator only: cancel the op, remove the signing key, lift a lock.
                (
                    .post, "/api/v1/signed-ops/\(opA)/cancel", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .delete, "/api/v1/operator-keys/\(signerKeyID)", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
                (
                    .post, "/api/v1/customers/\(w.customerA)/retrieval-unlock", nil,
                    [
                        "none": .unauthorized, "revoked": .unauthorized, "operator": .ok, "customer": .forbidden, "host": .forbidden,
                        "guest": .forbidden, "otherHost": .forbidden,
                    ]
                ),
            ]
            // Revocation last: it changes the world. Operator only; a second revoke finds no active keys.
            for (name, key) in keys where name != "operator" {
                let r = try await client.call(.delete, "/api/v1/keys/\(w.hostB)", key: key)
                #expect(r.status == (["none", "revoked"].contains(name) ? .unauthorized : .forbidden), "DELETE keys with \(name)")
            }
            table.append((.delete, "/api/v1/keys/\(w.hostB)", nil, [:]))
            #expect(
                Set(
                    table.map {
                        "\($0.0.rawValue) \($0.1.replacingOccurrences(of: w.customerA, with: "{id}").replacingOccurrences(of: w.hostA, with: "{id}").replacingOccurrences(of: w.hostB, with: "{id}").replacingOccurrences(of: opA, with: "{id}").replacingOccurrences(of: signerKeyID, with: "{id}").replacingOccurrences(of: w.customerB, with: "{id}").replacingOccurrences(of: w.guestA, with: "{id}").replacingOccurrences(of: "secrets/platform", with: "secrets/{bundle}").replacingOccurrences(of: "releases/agent/9.9.9", with: "releases/{component}/{version}"))"
                    }) == Set(HubAPI.apiRoutes(of: HubAPI.router(hub: h.hub))))
            for (method, uri, body, expected) in table where !expected.isEmpty {
                for (name, key) in keys {
                    let r = try await client.call(method, uri, key: key, body: body)
                    #expect(r.status == expected[name], "\(method) \(uri) with \(name) key: \(r.status) \(String(decoding: r.body, as: UTF8.self))")
                }
            }
            #expect(try await client.call(.get, "/api/v1/hosts", key: w.hostKeyB).status == .ok)
            #expect(try await client.call(.delete, "/api/v1/keys/\(w.hostB)", key: operatorKey).status == .ok)
            #expect(try await client.call(.get, "/api/v1/hosts", key: w.hostKeyB).status == .unauthorized)
            #expect(try await client.call(.delete, "/api/v1/keys/\(w.hostB)", key: operatorKey).status == .notFound)
        }
        await h.hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func scopingKeepsCustomersApart(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            let listA = try await client.call(.get, "/api/v1/hosts", key: w.hostKeyA)
            #expect(field("id", of: listA.json?["hosts"]?.arrayValue ?? []) == [w.hostA])
            let all = try await client.call(.get, "/api/v1/hosts", key: operatorKey)
            #expect(all.json?["hosts"]?.arrayValue?.count == 2)
            _ = try await client.call(
                .post, "/api/v1/events", key: w.hostKeyB, body: #"{"type":"backup_failed","severity":"critical","data":{"error":"disk full"}}"#)
            _ = try await client.call(.post, "/api/v1/events", key: w.guestKeyA, body: #"{"type":"db_dump_completed"}"#)
            let evA = try await client.call(.get, "/api/v1/events", key: w.customerKeyA)
            let eventsA: [JSONValue] = evA.json?["events"]?.arrayValue ?? []
            let typesA = field("type", of: eventsA)
            #expect(typesA == ["db_dump_completed"], "\(String(decoding: evA.body, as: UTF8.self))")
            #expect(evA.json?["events"]?.arrayValue?.first?["source"] == "guest")
            #expect(evA.json?["events"]?.arrayValue?.first?["guest_id"]?.stringValue == w.guestA)
            let evOp = try await client.call(.get, "/api/v1/events?type=backup_failed", key: operatorKey)
            #expect(evOp.json?["events"]?.arrayValue?.first?["data"]?["error"] == "disk full")
        }
        await h.hub.store.close()
    }

    /// Issue 21: a report whose state is unchanged (only its samples moved) adds no history row
    /// until the heartbeat is due; a state change adds one at once; the latest is always replaced.
    /// On PostgreSQL the whole write is one statement.
    @Test(arguments: TestStores.kinds)
    func reportHistoryKeepsStateChangesAndAHeartbeat(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(kind, clock: clock)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            func post(_ body: String) async throws {
                let answer = try await client.call(.post, "/api/v1/host-report", key: w.hostKeyA, body: body)
                #expect(answer.status == .ok, "\(String(decoding: answer.body, as: UTF8.self))")
            }
            func history() async throws -> Int {
                try await h.hub.store.withDB { db in
                    try await db.select().column("id").from("host_reports").where("host_id", .equal, SQLBind(w.hostA)).all().count
                }
            }
            func latest() async throws -> String {
                try await h.hub.store.withDB { db in
                    try await db.select().column("body").from("host_report_latest").where("host_id", .equal, SQLBind(w.hostA)).first()?
                        .decode(column: "body", as: String.self) ?? ""
                }
            }
            try await post(sampleReport())
            #expect(try await history() == 1)
            // Only samples moved (time, CPU, memory, uptime, load): the latest shows them, no new row.
            clock.advance(by: 60)
            let sampled = sampleReport().replacingOccurrences(of: #""cpu":0.12"#, with: #""cpu":0.97"#)
                .replacingOccurrences(of: #""uptime":86400"#, with: #""uptime":86460"#)
                .replacingOccurrences(of: "2026-11-23T12:00:00Z", with: "2026-11-23T12:01:00Z")
            try await post(sampled)
            #expect(try await history() == 1)
            #expect(try await latest().contains(#""cpu":0.97"#))
            // The state changed (a guest stopped): a row at once.
            clock.advance(by: 60)
            let stopped = sampleReport().replacingOccurrences(of: #""status":"running""#, with: #""status":"stopped""#)
            try await post(stopped)
            #expect(try await history() == 2)
            try await post(stopped)
            #expect(try await history() == 2)
            // Unchanged for a heartbeat (900 s by default): one row again.
            clock.advance(by: 901)
            try await post(stopped)
            #expect(try await history() == 3)
            // A blocked host's reports are not stored; after unblocking its first report is.
            _ = try await client.call(.post, "/api/v1/hosts/\(w.hostA)/block", key: operatorKey)
            try await post(sampleReport())
            #expect(try await history() == 3)
            _ = try await client.call(.post, "/api/v1/hosts/\(w.hostA)/unblock", key: operatorKey)
            try await post(stopped)
            #expect(try await history() == 4)
        }
        await h.hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func reportIngestAndBadInput(_ kind: HubStore.Kind) async throws {
        // A clock that stands still: the retention checks below must not depend on how fast the test runs.
        let h = try await HubHarness.make(kind, clock: ManualClock(start: Date()))
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            let ok = try await client.call(.post, "/api/v1/host-report", key: w.hostKeyA, body: sampleReport())
            #expect(ok.status == .ok)
            #expect(ok.json?["poll_interval_seconds"] == 300)
            #expect(ok.json?["desired_generation"] == 0)
            #expect(ok.json?["has_signed_ops"] == false)
            let host = try await client.call(.get, "/api/v1/hosts/\(w.hostA)", key: operatorKey)
            #expect(host.json?["last_report_age_seconds"]?.lenientInt.map { $0 <= 5 } == true)
            // A second report replaces the latest and adds to history.
            _ = try await client.call(.post, "/api/v1/host-report", key: w.hostKeyA, body: sampleReport(guests: "[]"))
            let counts = try await h.hub.store.withDB { db in
                (
                    try await db.select().column("id").from("host_reports").all().count,
                    try await db.select().column("body").from("host_report_latest").all().map { try $0.decode(column: "body", as: String.self) }
                )
            }
            #expect(counts.0 == 2)
            let metrics = try await client.call(.get, "/metrics", key: operatorKey)
            let text = String(decoding: metrics.body, as: UTF8.self)
            #expect(text.contains("felhom_hub_reports_accepted_total 2"))
            // Host A reported (alive from its first report); host B never did.
            #expect(text.contains(#"felhom_hub_hosts{liveness="alive"} 1"#) && text.contains(#"felhom_hub_hosts{liveness="unknown"} 1"#))
            #expect(text.contains(#"felhom_hub_http_requests_total{route="/api/v1/host-report",method="POST",status="2xx"} 2"#))
            // History older than the retention goes; the latest report stays.
            #expect(try await h.hub.pruneReports(olderThanDays: 0) == 0)
            #expect(try await h.hub.pruneReports(olderThanDays: -1) == 2)
            let latest = try await h.hub.store.withDB { db in try await db.select().column("host_id").from("host_report_latest").all().count }
            #expect(latest == 1)
            #expect(counts.1.count == 1 && counts.1[0].contains(#""guests":[]"#))

            let cases: [(String, String)] = [
                (sampleReport(guests: #"[{"vmid":5,"name":"web","status":"running"}]"#), "$.guests[0].vmid"),
                (
                    sampleReport(guests: #"[{"vmid":100,"name":"a","status":"running"},{"vmid":100,"name":"b","status":"running"}]"#),
                    "$.guests[1].vmid"
                ),
                (sampleReport().replacingOccurrences(of: #""backups":[],"#, with: ""), "$.backups"),
                (sampleReport().replacingOccurrences(of: #""backups":[]"#, with: #""backups":null"#), "$.backups"),
                (sampleReport().replacingOccurrences(of: #""cpu":0.12"#, with: #""cpu":7"#), "$.host.cpu"),
                ("{not json", "$"),
            ]
            for (body, path) in cases {
                let r = try await client.call(.post, "/api/v1/host-report", key: w.hostKeyA, body: body)
                #expect(r.status == .badRequest)
                #expect(r.json?["error"]?["path"]?.stringValue == path, "\(String(decoding: r.body, as: UTF8.self))")
            }
            let huge = try await client.call(.post, "/api/v1/host-report", key: w.hostKeyA, body: String(repeating: " ", count: HubAPI.maxBody + 10))
            #expect(huge.status == .contentTooLarge)
            let badCustomer = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"X","email":"nope","domain":"x.hu"}"#)
            #expect(badCustomer.status == .badRequest)
            #expect(badCustomer.json?["error"]?["path"] == "$.email")
            let badTZ = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"X","email":"x@y.hu","domain":"x.hu","timezone":"Mars/Olympus"}"#)
            #expect(badTZ.json?["error"]?["path"] == "$.timezone")
            let missing = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"name":"n"}"#)
            #expect(missing.json?["error"]?["path"] == "$.customer_id")
            let noCustomer = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"cus_nope","name":"n"}"#)
            #expect(noCustomer.status == .notFound && noCustomer.json?["error"]?["path"] == "$.customer_id")
            let guestOK = try await client.call(.post, "/api/v1/guest-report", key: w.guestKeyA, body: sampleGuestReport)
            #expect(guestOK.status == .ok)
            let badGuest = try await client.call(
                .post, "/api/v1/guest-report", key: w.guestKeyA,
                body: sampleGuestReport.replacingOccurrences(of: #""name":"immich""#, with: #""name":"Immich Photos""#))
            #expect(badGuest.json?["error"]?["path"] == "$.stacks[0].name")
            let badWait = try await client.call(.get, "/api/v1/control?wait=-3", key: w.hostKeyA)
            #expect(badWait.status == .badRequest)
        }
        await h.hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func longPollReturnsWhenTheGenerationMoves(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            let now = try await client.call(.get, "/api/v1/control?after_generation=0&wait=0", key: w.hostKeyA)
            #expect(now.json?["desired_generation"] == 0)
            let hub = h.hub
            let hostA = w.hostA
            let bump = Task {
                try await Task.sleep(for: .milliseconds(300))
                return try await hub.bumpGeneration(hostID: hostA)
            }
            let waited = try await client.call(.get, "/api/v1/control?after_generation=0&wait=30", key: w.hostKeyA)
            #expect(waited.json?["desired_generation"] == 1)
            #expect(try await bump.value == 1)
            // Already past: answered at once.
            let past = try await client.call(.get, "/api/v1/control?after_generation=0&wait=30", key: w.hostKeyA)
            #expect(past.json?["desired_generation"] == 1)
        }
        await h.hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func keysAreStoredOnlyAsHashesAndMigrationsAreIdempotent(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            let hashes = try await h.hub.store.withDB { db in
                try await db.select().column("hash").from("api_keys").all().map { try $0.decode(column: "hash", as: String.self) }
            }
            #expect(hashes.count >= 5)
            #expect(!hashes.contains(w.hostKeyA))
            #expect(hashes.allSatisfy { $0.count == 64 })
        }
        // Opening the same SQLite file again applies nothing twice.
        if kind == .sqlite {
            let path = NSTemporaryDirectory() + "felhom-mig-\(UUID().uuidString).sqlite"
            let a = try await HubStore.open(url: "sqlite:\(path)")
            await a.close()
            let b = try await HubStore.open(url: "sqlite:\(path)")
            let versions = try await b.withDB { db in try await db.select().column("version").from("schema_migrations").all().count }
            #expect(versions == 23)  // one row per migration: bump with each new one
            await b.close()
        }
        await h.hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func revokingAKeyTakesEffectAtOnceDespiteTheCache(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client, h.hub)
            #expect(try await client.call(.get, "/api/v1/hosts", key: w.hostKeyA).status == .ok)  // now cached
            try await h.hub.keys.revoke(subjectID: w.hostA)
            #expect(try await client.call(.get, "/api/v1/hosts", key: w.hostKeyA).status == .unauthorized)
        }
        await h.hub.store.close()
    }

    @Test func badDatabaseURLsAreClearAndHidePasswords() async throws {
        let e = await #expect(throws: StoreError.self) { _ = try await HubStore.open(url: "mysql://root:hunter2@db/x") }
        #expect(e?.message.contains("hunter2") == false)
        #expect(e?.code == .invalidURL)
        let e2 = await #expect(throws: StoreError.self) { _ = try await HubStore.open(url: "sqlite:/nonexistent-dir/x/y.sqlite") }
        #expect(e2?.code == .unavailable)
    }

    @Test func openAPIDocumentsEveryRoute() async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let r = try await client.call(.get, "/openapi.yaml", key: nil)
            let text = String(decoding: r.body, as: UTF8.self)
            for route in HubAPI.apiRoutes(of: HubAPI.router(hub: h.hub)) {
                let parts = route.split(separator: " ")
                let method = parts[0].lowercased()
                let path = String(parts[1])
                guard let at = text.range(of: "\n  \(path):\n") else {
                    Issue.record("\(path) is not documented")
                    continue
                }
                let rest = text[at.upperBound...]
                let section = rest.prefix { _ in true }.split(separator: "\n  /", maxSplits: 1).first ?? rest
                #expect(section.contains("    \(method):"), "\(route) is not documented")
            }
        }
        await h.hub.store.close()
    }
}
