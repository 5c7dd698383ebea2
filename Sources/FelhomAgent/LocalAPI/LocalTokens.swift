import Crypto
import FelhomCore
import Foundation
import Synchronization

/// The per-guest tokens of the local API (SPEC §1 rule 3, §4): one per guest, created at provision
/// and written into the guest's `/etc/felhom/controller.json`; the agent keeps only their SHA-256
/// (`state_dir/local-api-tokens.json`, 0600, written whole and durably), so a copy of the state
/// directory does not hand out working tokens. A token acts only on its own guest.
public final class LocalTokens: Sendable {
    let path: String
    let hashes: Mutex<[Int: String]>
    /// The file's change time and size when last read: a token issued by another process
    /// (`felhom-agent local-api token`) is seen at the next request.
    let seen = Mutex<(Int, Int, Int64)>((0, 0, -1))

    /// Loads the store at `path` (missing: empty; damaged: an error naming it, never reset).
    public init(path: String) throws(LocalAPIError) {
        self.path = path
        hashes = Mutex(try Self.read(path) ?? [:])
        seen.withLock { $0 = Self.stamp(path) }
    }

    static func read(_ path: String) throws(LocalAPIError) -> [Int: String]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            let decoded = try JSONDecoder().decode([String: String].self, from: data)
            var out: [Int: String] = [:]
            for (k, v) in decoded {
                guard let vmid = Int(k), v.count == 64 else { throw LocalAPIError(.internal, "bad entry \(k)") }
                out[vmid] = v
            }
            return out
        } catch {
            throw LocalAPIError(.internal, "the local API token store '\(path)' is damaged (\(error)); fix or move it away")
        }
    }

    static func stamp(_ path: String) -> (Int, Int, Int64) {
        var st = stat()
        guard stat(path, &st) == 0 else { return (0, 0, -1) }
        return (Int(st.st_ctim.tv_sec), Int(st.st_ctim.tv_nsec), Int64(st.st_size))
    }

    /// Rereads the file when another process changed it (a damaged file keeps the tokens in memory).
    func refresh() {
        let now = Self.stamp(path)
        guard seen.withLock({ $0 != now }) else { return }
        guard let fresh = try? Self.read(path) else { return }
        hashes.withLock { $0 = fresh }
        seen.withLock { $0 = now }
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random token for `vmid` (replacing any earlier one), stored hashed before it is returned.
    public func issue(vmid: Int) throws(LocalAPIError) -> Secret {
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        let token =
            "flg_"
            + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        try change { $0[vmid] = Self.digest(token) }
        return Secret(token)
    }

    /// Forgets `vmid`'s token (a destroyed guest).
    public func revoke(vmid: Int) throws(LocalAPIError) { try change { $0[vmid] = nil } }

    /// The guest a presented token belongs to; nil for an unknown token. Compares digests in
    /// constant time.
    public func guest(for token: String) -> Int? {
        guard !token.isEmpty, token.utf8.count <= 256 else { return nil }
        refresh()
        let presented = Array(Self.digest(token).utf8)
        return hashes.withLock { all in
            var found: Int?
            for (vmid, stored) in all where Self.equal(Array(stored.utf8), presented) { found = vmid }
            return found
        }
    }

    /// The guests with a token.
    public var guests: [Int] { hashes.withLock { $0.keys.sorted() } }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    func change(_ body: (inout [Int: String]) -> Void) throws(LocalAPIError) {
        refresh()  // never overwrite another process's newer tokens
        try hashes.withLock { (all: inout [Int: String]) throws(LocalAPIError) in
            var next = all
            body(&next)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let bytes: [UInt8]
            do { bytes = Array(try encoder.encode(Dictionary(uniqueKeysWithValues: next.map { (String($0.key), $0.value) }))) } catch {
                throw LocalAPIError(.internal, "cannot encode the token store: \(error)")
            }
            do throws(AppendLogError) { try DurableFile.write(bytes, to: path, mode: 0o600) } catch {
                throw LocalAPIError(.internal, "cannot write the token store '\(path)': \(error.message)")
            }
            all = next
            seen.withLock { $0 = Self.stamp(path) }
        }
    }
}

/// A local API failure: an HTTP status, a code and a message for the `{"error": {…}}` body.
public struct LocalAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case unauthorized, forbidden
        case notFound = "not_found"
        case badRequest = "bad_request"
        case tooLarge = "too_large"
        case tooManyRequests = "too_many_requests"
        case conflict, unavailable, `internal`
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }

    /// The HTTP status of the code.
    public var httpStatus: Int {
        switch code {
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .badRequest: 400
        case .tooLarge: 413
        case .tooManyRequests: 429
        case .conflict: 409
        case .unavailable: 503
        case .internal: 500
        }
    }
}
