import Crypto
import FelhomCore
import Foundation
import SQLKit
import Synchronization

/// Issues and checks API keys. Keys are random (256 bits), shown once, stored only as SHA-256
/// hashes, and compared in constant time. The operator key comes from configuration.
///
/// Resolved keys are cached in the process for `cacheTTL` (default 5 s): a key revoked on this
/// replica stops at once, on other replicas within the TTL.
public struct KeyAuthority: Sendable {
    let store: HubStore
    let operatorKeyHash: [UInt8]?
    /// A key that may read `/metrics` and nothing else (`metrics_key`), for a Prometheus scraper.
    let metricsKeyHash: [UInt8]?
    let cache: PrincipalCache

    public init(store: HubStore, operatorKey: String?, metricsKey: String? = nil, cacheTTL: Duration = .seconds(5)) {
        self.store = store
        self.operatorKeyHash = operatorKey.flatMap { $0.isEmpty ? nil : Array(SHA256.hash(data: Array($0.utf8))) }
        self.metricsKeyHash = metricsKey.flatMap { $0.isEmpty ? nil : Array(SHA256.hash(data: Array($0.utf8))) }
        self.cache = PrincipalCache(ttl: cacheTTL)
    }

    /// Whether `Authorization: Bearer KEY` carries the metrics key (constant time).
    func isMetricsKey(authorization: String?) -> Bool {
        guard let expected = metricsKeyHash, let header = authorization, header.hasPrefix("Bearer ") else { return false }
        let key = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        return Self.constantTimeEqual(Array(SHA256.hash(data: Array(key.utf8))), expected)
    }

    /// A new key: `fh_<kind>_<43 base64url chars>`.
    static func newKey(kind: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let b64 = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return "fh_\(kind)_\(b64)"
    }

    static func hash(_ key: String) -> String {
        Hex.encode(SHA256.hash(data: Array(key.utf8)))
    }

    /// Constant-time equality of two byte strings of the same length.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// Issues a key for `kind` (`host`, `guest`, `customer`) and stores its hash; returns the key (shown once).
    func issue(kind: String, subjectID: String, customerID: String, in db: any SQLDatabase) async throws -> String {
        let key = Self.newKey(kind: kind)
        try await KeysTable.insert(
            id: Ids.make("key"), hash: Self.hash(key), kind: kind, subjectID: subjectID, customerID: customerID,
            at: Int64(Date().timeIntervalSince1970), in: db)
        return key
    }

    /// The hex SHA-256 of the configured operator key: dashboard sessions are bound to it, so
    /// rotating the key ends every session.
    var operatorKeyBinding: String { Hex.encode(operatorKeyHash ?? []) }

    /// Resolves an `Authorization: Bearer KEY` header; throws 401 for anything else.
    public func principal(authorization: String?) async throws -> Principal {
        guard let header = authorization, header.hasPrefix("Bearer ") else { throw HubError.unauthorized }
        let key = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty, key.count <= 256 else { throw HubError.unauthorized }
        let presented = Array(SHA256.hash(data: Array(key.utf8)))
        if let op = operatorKeyHash, Self.constantTimeEqual(presented, op) { return .operator }
        let hashText = Hex.encode(presented)
        if let cached = cache.get(hashText) { return cached }
        let principal = try await lookup(hashText)
        cache.put(hashText, principal)
        return principal
    }

    private func lookup(_ hashText: String) async throws -> Principal {
        let row = try await store.withDB { db in try await KeysTable.byHash(hashText, in: db) }
        guard let row, !row.revoked, Self.constantTimeEqual(Array(row.hash.utf8), Array(hashText.utf8)) else { throw HubError.unauthorized }
        let subject = row.subjectID
        let customer = row.customerID
        let kind = row.kind
        if kind != "host" {
            // A suspended customer's own and guest keys stop; its hosts still poll and are told they are blocked.
            let suspended = try await store.withDB { db in try await CustomersTable.isSuspended(customer, in: db) }
            if suspended { throw HubError(.forbidden, "customer_suspended", "this customer is suspended by the operator") }
        }
        switch kind {
        case "customer": return .customer(customerID: customer)
        case "host": return .host(hostID: subject, customerID: customer)
        case "guest":
            let hostID = try await store.withDB { db in try await GuestsTable.hostID(ofGuest: subject, in: db) }
            guard let hostID else { throw HubError.unauthorized }
            return .guest(guestID: subject, hostID: hostID, customerID: customer)
        default: throw HubError.unauthorized
        }
    }

    /// Revokes every key of a subject (host, guest or customer).
    public func revoke(subjectID: String) async throws {
        defer { cache.removeAll() }
        try await store.withDB { db in try await KeysTable.revokeAll(subjectID: subjectID, at: Int64(Date().timeIntervalSince1970), in: db) }
    }
}

/// A small TTL cache of resolved keys (by key hash).
final class PrincipalCache: Sendable {
    private let entries = Mutex<[String: (Principal, ContinuousClock.Instant)]>([:])
    let ttl: Duration

    init(ttl: Duration) { self.ttl = ttl }

    func get(_ hash: String) -> Principal? {
        entries.withLock { e in
            guard let (p, at) = e[hash] else { return nil }
            if ContinuousClock.now - at > ttl {
                e[hash] = nil
                return nil
            }
            return p
        }
    }

    func put(_ hash: String, _ p: Principal) {
        guard ttl > .zero else { return }
        entries.withLock { e in
            if e.count > 100_000 { e.removeAll() }
            e[hash] = (p, ContinuousClock.now)
        }
    }

    func removeAll() { entries.withLock { $0.removeAll() } }
}

/// Readable random ids: `cus_…`, `hst_…`, `gst_…`, `evt_…`.
enum Ids {
    static func make(_ prefix: String) -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyz23456789")
        var rng = SystemRandomNumberGenerator()
        return prefix + "_" + String((0..<16).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] })
    }
}
