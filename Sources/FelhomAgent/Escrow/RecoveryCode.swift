import Crypto
import Foundation

/// The customer's recovery code: 80 random bits (SPEC §1 rule 5 — enough that whoever holds the
/// hub's copy of the wrapped key cannot try every code offline) plus a 20-bit checksum, written as
/// 20 characters of Crockford's base32 in five groups: `7K2Q-M9XD-4TBR-J0HW-E6PN`.
///
/// The checksum catches a mistyped code before the slow key derivation runs. Reading is forgiving
/// the way Crockford's alphabet intends: case, spaces and hyphens are ignored, `O` reads as `0`,
/// `I` and `L` as `1`, `U` is never used.
public struct RecoveryCode: Sendable, Equatable, CustomStringConvertible {
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    /// The 16 random characters (80 bits).
    let body: String

    /// A new code from the system's secure random generator.
    public static func generate() -> RecoveryCode {
        var rng = SystemRandomNumberGenerator()
        return RecoveryCode(body: String((0..<16).map { _ in alphabet[Int.random(in: 0..<32, using: &rng)] }))
    }

    init(body: String) { self.body = body }

    /// Parses a code as a person typed it; a wrong length, a character outside the alphabet or a
    /// checksum that does not match is refused without saying which characters were given.
    public init(parsing text: String) throws(EscrowError) {
        var chars: [Character] = []
        for c in text.uppercased() {
            switch c {
            case " ", "-", "\t", "\n": continue
            case "O": chars.append("0")
            case "I", "L": chars.append("1")
            default:
                guard Self.alphabet.contains(c) else {
                    throw EscrowError(.badCode, "a recovery code has only the letters and digits printed on the recovery sheet")
                }
                chars.append(c)
            }
        }
        guard chars.count == 20 else {
            throw EscrowError(.badCode, "a recovery code has 20 characters in five groups of four (got \(chars.count))")
        }
        let body = String(chars.prefix(16))
        guard String(chars.suffix(4)) == Self.checksum(body) else {
            throw EscrowError(.badCode, "the recovery code is mistyped (its check characters do not match)")
        }
        self.body = body
    }

    /// Four characters (20 bits) of SHA-256 over the body.
    static func checksum(_ body: String) -> String {
        let digest = Array(SHA256.hash(data: Data("felhom-recovery-code:\(body)".utf8)))
        let bits = (UInt32(digest[0]) << 12) | (UInt32(digest[1]) << 4) | (UInt32(digest[2]) >> 4)
        return String((0..<4).map { i in alphabet[Int((bits >> UInt32(15 - 5 * i)) & 31)] })
    }

    /// The printed form, `XXXX-XXXX-XXXX-XXXX-XXXX`.
    public var printed: String {
        let all = Array(body + Self.checksum(body))
        return stride(from: 0, to: 20, by: 4).map { String(all[$0..<$0 + 4]) }.joined(separator: "-")
    }

    /// What the key derivation reads: the 16 body characters, canonical.
    var secretBytes: [UInt8] { Array(body.utf8) }

    /// Never the code itself: a value that reaches a log line or an error says only what it is.
    public var description: String { "RecoveryCode(…)" }
}

/// Why an escrow step failed (the code never appears in a message).
public struct EscrowError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The recovery code is malformed or mistyped.
        case badCode = "bad_code"
        /// The envelope is not one this agent reads (format, KDF, parameters out of bounds).
        case badEnvelope = "bad_envelope"
        /// Authentication failed: the wrong code (or wrapping key), or the envelope was altered.
        case unwrapFailed = "unwrap_failed"
        /// The unwrapped key is not the key the envelope names (or the box uses).
        case fingerprintMismatch = "fingerprint_mismatch"
        /// The envelope is of the other tier (a recovery code for an operator-managed box, or an
        /// operator escrow key for a customer-held one).
        case wrongTier = "wrong_tier"
        /// An operator escrow key (public line or private key file) is malformed.
        case badOperatorKey = "bad_operator_key"
        /// Reading or writing a local file, or talking to PVE or the hub, failed.
        case io
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "escrow \(code.rawValue): \(message)" }
}
