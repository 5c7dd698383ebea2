import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import Testing

@Suite struct RecoveryTests {
    struct World {
        var customer = "", host = "", hostKey = "", guest = "", guestKey = ""
    }

    func world(_ client: some TestClientProtocol) async throws -> World {
        var w = World()
        w.customer =
            try await client.call(
                .post, "/api/v1/customers", key: operatorKey,
                body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"kiss.example.hu"}"#
            ).json?["id"]?.stringValue ?? ""
        let h = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customer)","name":"nappali"}"#)
        w.host = h.json?["id"]?.stringValue ?? ""
        w.hostKey = h.json?["api_key"]?.stringValue ?? ""
        let g = try await client.call(.post, "/api/v1/hosts/\(w.host)/guests", key: w.hostKey, body: #"{"name":"photos"}"#)
        w.guest = g.json?["id"]?.stringValue ?? ""
        w.guestKey = g.json?["api_key"]?.stringValue ?? ""
        return w
    }

    @Test(arguments: TestStores.kinds)
    func recoveryBundleComesFromDurableSourcesOnly(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(kind, clock: clock)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            let fp = "9c:2f:41:0a:7e:5b:d3:18:64:af:0c:92:e1:57:3b:c8:10:4d:6e:a9:f2:35:87:0b:ce:61:d4:28:93:7a:b5:e0"
            let dr = try await client.call(
                .put, "/api/v1/recovery/\(w.host)", key: operatorKey,
                body: """
                    {"pbs_namespace":"customers/kiss","repository_fingerprint":"\(fp)","wrapped_escrow_key":"c2VjcmV0LXdyYXBwZWQ=","tunnel_token_ref":"vault:tunnels/kiss"}
                    """)
            #expect(dr.status == .ok)
            let bad = try await client.call(.put, "/api/v1/recovery/\(w.host)", key: operatorKey, body: #"{"repository_fingerprint":"nope"}"#)
            #expect(bad.status == .badRequest && bad.json?["error"]?["path"] == "$.repository_fingerprint")
            _ = try await client.call(
                .post, "/api/v1/recovery/box", key: w.hostKey,
                body: #"{"storage_manifest":[{"uuid":"1b2c","state":"attached","label":"media"}],"pbs_fingerprint":"\#(fp)"}"#)
            _ = try await client.call(.put, "/api/v1/hosts/\(w.host)/desired", key: operatorKey, body: sampleDesired)
            _ = try await client.call(.post, "/api/v1/hosts/\(w.host)/desired/publish", key: operatorKey)
            _ = try await client.call(.post, "/api/v1/host-report", key: w.hostKey, body: sampleReport())
            // Every report goes away; the bundle does not depend on them.
            clock.advance(by: 40 * 86400)
            #expect(try await h.hub.pruneReports(olderThanDays: 1) >= 1)
            let b = try await client.call(.get, "/api/v1/recovery/\(w.host)", key: operatorKey)
            #expect(b.status == .ok)
            let j = try #require(b.json)
            #expect(j["identity"]?["host_name"] == "nappali" && j["identity"]?["domain"] == "kiss.example.hu")
            #expect(j["pbs"]?["namespace"] == "customers/kiss" && j["pbs"]?["repository_fingerprint"]?.stringValue == fp)
            #expect(j["wrapped_escrow_key"] == "c2VjcmV0LXdyYXBwZWQ=" && j["tunnel_token_ref"] == "vault:tunnels/kiss")
            #expect(j["box_reported"]?["storage_manifest"]?.arrayValue?.first?["label"] == "media")
            #expect(j["desired"]?["generation"] == 1 && j["desired"]?["guests"]?.arrayValue?.count == 2)
        }
        await h.hub.store.close()
    }

    /// The box's escrow envelope: stored as the box sent it (opaque), returned in the bundle to the
    /// operator and to the host's own key, kept when a later report omits it; a malformed one is
    /// refused naming the field.
    @Test(arguments: TestStores.kinds)
    func theBoxsEscrowEnvelopeIsKeptOpaqueAndReadByItsOwnHost(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            let envelope =
                #"{"ciphertext":"AAAA","created":"2026-12-01T02:00:00Z","format":"felhom-escrow-v1","kdf":"scrypt","kdf_params":{"n":32768,"p":1,"r":8},"key_fingerprint":"0e:ab","nonce":"BBBB","salt":"CCCC"}"#
            let sent = try await client.call(
                .post, "/api/v1/recovery/box", key: w.hostKey, body: #"{"storage_manifest":[],"wrapped_escrow_key":\#(envelope)}"#)
            #expect(sent.status == .ok)
            _ = try await client.call(.post, "/api/v1/recovery/box", key: w.hostKey, body: #"{"storage_manifest":[]}"#)
            for key in [operatorKey, w.hostKey] {
                let b = try await client.call(.get, "/api/v1/recovery/\(w.host)", key: key)
                #expect(b.status == .ok)
                #expect(b.json?["box_reported"]?["wrapped_escrow_key"] == (try JSONValue.parse(Data(envelope.utf8))), "kept as sent")
            }
            #expect(try await client.call(.get, "/api/v1/recovery/\(w.host)", key: w.guestKey).status == .forbidden)
            for (body, path) in [
                (#"{"storage_manifest":[],"wrapped_escrow_key":{"format":"v0"}}"#, "$.wrapped_escrow_key"),
                (#"{"storage_manifest":[],"wrapped_escrow_key":{"format":"felhom-escrow-v1","kdf":"scrypt"}}"#, "$.wrapped_escrow_key.salt"),
                (#"{"storage_manifest":[],"wrapped_escrow_key":"c2VjcmV0"}"#, "$.wrapped_escrow_key"),
                (
                    envelope.replacingOccurrences(of: #""kdf":"scrypt""#, with: #""kdf":"\#(String(repeating: "s", count: 41))""#).wrappedBox,
                    "$.wrapped_escrow_key.kdf"
                ),
                (
                    envelope.replacingOccurrences(of: #","kdf_params":{"n":32768,"p":1,"r":8}"#, with: "").wrappedBox,
                    "$.wrapped_escrow_key.kdf_params"
                ),
            ] {
                let r = try await client.call(.post, "/api/v1/recovery/box", key: w.hostKey, body: body)
                #expect(r.status == .badRequest && r.json?["error"]?["path"]?.stringValue == path, "\(body)")
            }
        }
        await h.hub.store.close()
    }

    @Test func passphraseRetrievalIsRateLimited() async throws {
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(.sqlite, clock: clock)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            let pass =
                try await client.call(.post, "/api/v1/customers/\(w.customer)/passphrase", key: operatorKey).json?["passphrase"]?.stringValue ?? ""
            #expect(pass.split(separator: "-").count >= 4)
            func retrieve(_ p: String, _ what: String = "recovery", domain: String = "kiss.example.hu") async throws -> Reply {
                try await client.call(
                    .post, "/api/v1/retrieve", key: nil,
                    body: String(
                        decoding: JSONValue.object([
                            "domain": .string(domain), "passphrase": .string(p), "what": .string(what),
                        ]).serialized(), as: UTF8.self))
            }
            // Typed loosely (spaces, capitals) it still works.
            let ok = try await retrieve(pass.replacingOccurrences(of: "-", with: " ").uppercased())
            #expect(ok.status == .ok && ok.json?["hosts"]?.arrayValue?.first?["identity"]?["host_id"]?.stringValue == w.host)
            let configs = try await retrieve(pass, "config")
            #expect(configs.json?["configs"]?[w.guest]?["domain"] == "kiss.example.hu")
            #expect(configs.json?["configs"]?[w.guest]?["guest"]?["name"] == "photos", "retrieved configs say which guest they are for")
            // An unknown domain and a wrong passphrase look the same.
            #expect(try await retrieve(pass, domain: "other.example.hu").json?["error"]?["code"] == "retrieval_refused")
            for _ in 0..<5 { #expect(try await retrieve("alma-alma-alma-alma").status == .unauthorized) }
            let locked = try await retrieve(pass)
            #expect(locked.status == .tooManyRequests, "locked even with the right passphrase")
            let events = try await client.call(.get, "/api/v1/events?type=retrieval_locked", key: operatorKey).json?["events"]?.arrayValue ?? []
            #expect(events.count == 1)
            // The operator lifts the lock: the right passphrase works at once; the lift is an event.
            let unlock = try await client.call(.post, "/api/v1/customers/\(w.customer)/retrieval-unlock", key: operatorKey)
            #expect(unlock.status == .ok && (unlock.json?["cleared_failed_attempts"]?.lenientInt ?? 0) >= 5, "\(unlock.json ?? .null)")
            #expect(try await retrieve(pass).status == .ok)
            // Locked again; issuing a new passphrase lifts it too.
            for _ in 0..<5 { #expect(try await retrieve("alma-alma-alma-alma").status == .unauthorized) }
            #expect(try await retrieve(pass).status == .tooManyRequests)
            let newPass =
                try await client.call(.post, "/api/v1/customers/\(w.customer)/passphrase", key: operatorKey).json?["passphrase"]?.stringValue ?? ""
            #expect(try await retrieve(newPass).status == .ok)
            let unlocked = try await client.call(.get, "/api/v1/events?type=retrieval_unlocked", key: operatorKey).json?["events"]?.arrayValue ?? []
            #expect(unlocked.count == 2, "one event per lift: by the operator, by a new passphrase")
            // Without either, the lock ends by itself after the window.
            for _ in 0..<5 { #expect(try await retrieve("alma-alma-alma-alma").status == .unauthorized) }
            #expect(try await retrieve(newPass).status == .tooManyRequests)
            clock.advance(by: 15 * 60 + 1)
            #expect(try await retrieve(newPass).status == .ok)
        }
        await h.hub.store.close()
    }

    @Test func controllerConfigMergesOverridesAndNeverCarriesACloudflareToken() async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            let refused = try await client.call(
                .put, "/api/v1/customers/\(w.customer)/config-overrides", key: operatorKey,
                body: #"{"tunnel":{"cloudflare":{"api_token":"cf-secret"}}}"#)
            #expect(refused.status == .badRequest && refused.json?["error"]?["path"] == "$.tunnel.cloudflare.api_token")
            // Paths, endpoints, credentials, quiesce.enabled and stacks.protected are the guest's own.
            for (body, path) in [
                (#"{"stacks":{"dir":"/srv/stacks"}}"#, "$.stacks"), (#"{"agent":{"url":"https://evil.example"}}"#, "$.agent"),
                (#"{"quiesce":{"enabled":false}}"#, "$.quiesce.enabled"), (#"{"hub":{"url":"https://evil.example"}}"#, "$.hub"),
                (#"{"quiesce":{"max_seconds":1}}"#, "$.quiesce.max_seconds"),
            ] {
                let answer = try await client.call(.put, "/api/v1/customers/\(w.customer)/config-overrides", key: operatorKey, body: body)
                #expect(answer.status == .badRequest && answer.json?["error"]?["path"]?.stringValue == path, "\(body): \(answer.json ?? nil)")
            }
            #expect(
                try await client.call(
                    .put, "/api/v1/customers/\(w.customer)/config-overrides", key: operatorKey,
                    body: #"{"watchdog":{"interval_seconds":15}}"#
                ).status == .ok)
            let cfg = try await client.call(.get, "/api/v1/guests/\(w.guest)/config", key: w.guestKey)
            #expect(cfg.json?["watchdog"]?["interval_seconds"] == 15)
            #expect(cfg.json?["quiesce"]?["max_seconds"] == 1800, "untouched defaults stay")
            #expect(cfg.json?["guest"]?["id"]?.stringValue == w.guest)
            #expect(ControllerHubSettings.read(try #require(cfg.json)).findings.isEmpty, "\(cfg.json ?? nil)")
            #expect(cfg.json?["stacks"] == nil && cfg.json?["agent"] == nil && cfg.json?["hub"] == nil)
            #expect(ControllerConfig.forbiddenPath(in: try #require(cfg.json)) == nil)
            #expect(!String(decoding: cfg.body, as: UTF8.self).contains("cf-secret"))
        }
        // Defence in depth: even a stored override with a token is dropped at generation.
        let merged = ControllerConfig.deepMerge(
            ControllerConfig.defaults(hubURL: "https://h", guestID: "g", customerDomain: "d"),
            ["cloudflare": ["api_token": "x", "zone": "z"], "CLOUDFLARE_API_TOKEN": "y"])
        #expect(ControllerConfig.forbiddenPath(in: merged) != nil)
        let clean = ControllerConfig.stripped(merged)
        #expect(ControllerConfig.forbiddenPath(in: clean) == nil)
        #expect(clean["cloudflare"]?["zone"] == "z", "only the credential goes")
        await h.hub.store.close()
    }
}

extension String {
    /// A box recovery report carrying this text as its escrow envelope.
    fileprivate var wrappedBox: String { #"{"storage_manifest":[],"wrapped_escrow_key":\#(self)}"# }
}
