import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Testing

@Suite struct SecretBundleTests {
    static let secretsKey = Data((0..<32).map { UInt8($0 * 7 & 0xFF) }).base64EncodedString()

    @Test func versionsAreSealedAtRestAndServedOnlyToTheGuestsOwnKey() async throws {
        try await withRunningHub(
            adjust: { $0.secretsKey = Secret(Self.secretsKey) },
            { hub in
                let op = try HubClient(url: hub.url, key: Secret(operatorKey))
                let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
                let host = try await op.createHost(customerID: customer, name: "box")
                let guest = try await op.createGuest(hostID: host.id, name: "apps", idempotencyKey: nil)
                let other = try await op.createGuest(hostID: host.id, name: "other", idempotencyKey: nil)
                let value = "  p@ss 'word'\nsecond line  "
                let first = try await op.send(
                    "PUT", "/api/v1/guests/\(guest.id)/secrets/platform",
                    body: SecretBundleUpload(secrets: ["DB_PASSWORD": .text(value), "TLS_KEY": .bytes([0, 1, 0xFF])]), as: SecretBundleView.self)
                #expect(first.version == 1 && first.keys == ["DB_PASSWORD", "TLS_KEY"] && first.file == nil)
                let second = try await op.send(
                    "PUT", "/api/v1/guests/\(guest.id)/secrets/platform", body: SecretBundleUpload(secrets: ["DB_PASSWORD": .text("rotated")]),
                    as: SecretBundleView.self)
                #expect(second.version == 2)
                // The guest gets the exact file of the latest version.
                let asGuest = try HubClient(url: hub.url, key: guest.apiKey)
                let mine = try await asGuest.send("GET", "/api/v1/guests/\(guest.id)/secrets", as: SecretBundleList.self)
                let encoded = try #require(mine.bundles.first?.file)
                let decoded = try #require(Data(base64Encoded: encoded))
                let file = try SecretsFile(parsing: Array(decoded))
                #expect(mine.bundles.map(\.version) == [2] && file["DB_PASSWORD"] == Array("rotated".utf8))
                // The operator sees names and versions, never values; another guest sees nothing.
                let listed = try await op.send("GET", "/api/v1/guests/\(guest.id)/secrets", as: SecretBundleList.self)
                #expect(listed.bundles.first?.file == nil && listed.bundles.first?.keys == ["DB_PASSWORD"])
                let asOther = try HubClient(url: hub.url, key: other.apiKey)
                await #expect(throws: HubClientError.self) {
                    _ = try await asOther.send("GET", "/api/v1/guests/\(guest.id)/secrets", as: SecretBundleList.self)
                }
                // Nothing readable in the database: the values are sealed.
                let raw = try await hub.hub.store.withDB { db in try await db.raw("SELECT sealed, keys FROM secret_bundles").all() }
                #expect(raw.count == 2)
                for row in raw {
                    let sealed = try row.decode(column: "sealed", as: String.self)
                    let bytes = Data(base64Encoded: sealed) ?? Data()
                    #expect(!String(decoding: bytes, as: UTF8.self).contains("rotated") && !sealed.contains("rotated"))
                }
                // Bad names and keys are 400s naming them.
                await #expect(throws: HubClientError.self) {
                    _ = try await op.send(
                        "PUT", "/api/v1/guests/\(guest.id)/secrets/Bad.Name", body: SecretBundleUpload(secrets: [:]), as: SecretBundleView.self)
                }
                do {
                    _ = try await op.send(
                        "PUT", "/api/v1/guests/\(guest.id)/secrets/platform", body: SecretBundleUpload(secrets: ["lower": .text("x")]),
                        as: SecretBundleView.self)
                    Issue.record("a lower-case key was accepted")
                } catch let error as HubClientError {
                    #expect(error.message.contains("lower") && error.message.contains("[A-Z0-9_]"), "\(error)")
                }
                let events = try await op.events(type: "secrets_rotated")
                #expect(events.count == 2 && !events.contains { "\($0.data)".contains("rotated") })
            })
    }

    @Test func withoutASecretsKeyTheHubSaysSo() async throws {
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let host = try await op.createHost(customerID: customer, name: "box")
            let guest = try await op.createGuest(hostID: host.id, name: "apps", idempotencyKey: nil)
            do {
                _ = try await op.send(
                    "PUT", "/api/v1/guests/\(guest.id)/secrets/platform", body: SecretBundleUpload(secrets: ["A": .text("1")]),
                    as: SecretBundleView.self)
                Issue.record("stored without a secrets_key")
            } catch let error as HubClientError {
                #expect(error.code == "secrets_key_unset" || error.message.contains("secrets_key"), "\(error)")
            }
        }
        var config = HubConfig()
        config.operatorKey = Secret(operatorKey)
        config.secretsKey = Secret("too-short")
        #expect(throws: (any Error).self) { _ = try config.resolve() }
    }
}
