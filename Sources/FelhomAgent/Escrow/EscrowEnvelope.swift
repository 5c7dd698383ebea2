import Crypto
import FelhomCore
import Foundation
import _CryptoExtras

/// The box's PBS encryption key, wrapped for the hub to keep (SPEC §1 rule 5, docs/formats.md
/// "Escrow envelope"): the raw 32-byte key sealed with AES-256-GCM under a wrapping key that scrypt
/// derives from the customer's ``RecoveryCode``. The hub stores the envelope as opaque text and
/// can neither open it nor, with 80 bits behind scrypt, guess the code.
///
/// Everything the envelope says is bound to the ciphertext as associated data (format, KDF and its
/// parameters, salt, key fingerprint), so an altered field fails authentication rather than being
/// believed. An envelope from the hub is untrusted: parameters outside ``Limits`` are refused
/// before any work, so a hostile hub cannot make the box spend gigabytes on a key derivation.
public struct EscrowEnvelope: Codable, Sendable, Equatable {
    public static let formatV1 = "felhom-escrow-v1"

    /// The KDF `scrypt` (the customer's recovery code).
    public static let kdfScrypt = "scrypt"
    /// The KDF of the operator-managed tier: X25519 with the operator escrow public key, then
    /// HKDF-SHA256 (``OperatorEscrowKey``).
    public static let kdfX25519 = "x25519-hkdf-sha256"

    /// The KDF's parameters. `scrypt`: cost `n` = 2^k, block size `r`, parallelism `p`.
    /// `x25519-hkdf-sha256`: `recipient` (the operator escrow public key) and `ephemeral` (the
    /// box's one-time public key), base64 of 32 bytes each.
    public struct KDFParams: Codable, Sendable, Equatable {
        public var n: Int
        public var r: Int
        public var p: Int
        public var recipient: String?
        public var ephemeral: String?
        /// 2^15 · 8 · 128 B = 32 MiB and ~0.35 s per derivation on a small box (`scripts/bench-escrow`).
        public static let standard = KDFParams(n: 1 << 15, r: 8, p: 1)
        public init(n: Int, r: Int, p: Int) {
            self.n = n
            self.r = r
            self.p = p
        }

        enum CodingKeys: String, CodingKey { case n, r, p, recipient, ephemeral }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            n = try c.decodeIfPresent(Int.self, forKey: .n) ?? 0
            r = try c.decodeIfPresent(Int.self, forKey: .r) ?? 0
            p = try c.decodeIfPresent(Int.self, forKey: .p) ?? 0
            recipient = try c.decodeIfPresent(String.self, forKey: .recipient)
            ephemeral = try c.decodeIfPresent(String.self, forKey: .ephemeral)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            if recipient == nil && ephemeral == nil {
                try c.encode(n, forKey: .n)
                try c.encode(r, forKey: .r)
                try c.encode(p, forKey: .p)
            }
            try c.encodeIfPresent(recipient, forKey: .recipient)
            try c.encodeIfPresent(ephemeral, forKey: .ephemeral)
        }
    }

    /// What an envelope may ask of this box.
    public enum Limits {
        public static let maxN = 1 << 20
        public static let maxR = 16
        public static let maxP = 4
    }

    public var format: String
    public var kdf: String
    public var kdfParams: KDFParams
    /// Base64, 16 random bytes.
    public var salt: String
    /// Base64, the 12-byte AES-GCM nonce.
    public var nonce: String
    /// Base64, the sealed 32-byte key followed by the 16-byte tag.
    public var ciphertext: String
    /// The PBS fingerprint of the wrapped key (`xx:xx:…`, 32 bytes).
    public var keyFingerprint: String
    /// RFC 3339, when it was made.
    public var created: String

    enum CodingKeys: String, CodingKey {
        case format, kdf, salt, nonce, ciphertext, created
        case kdfParams = "kdf_params"
        case keyFingerprint = "key_fingerprint"
    }

    /// The wrapping key for `code` under `salt` and `params` (slow on purpose).
    public static func wrappingKey(code: RecoveryCode, salt: [UInt8], params: KDFParams) throws(EscrowError) -> SymmetricKey {
        do {
            return try KDF.Scrypt.deriveKey(
                from: code.secretBytes, salt: salt, outputByteCount: 32, rounds: params.n, blockSize: params.r, parallelism: params.p,
                maxMemory: 128 * params.n * params.r * params.p + (1 << 20))
        } catch {
            throw EscrowError(.badEnvelope, "scrypt refused its parameters (n \(params.n), r \(params.r), p \(params.p))")
        }
    }

    /// Wraps a raw PBS key under `code`; returns the envelope and the wrapping key (the box keeps
    /// the latter for its escrow drill — never the code).
    public static func wrap(rawKey: [UInt8], code: RecoveryCode, params: KDFParams = .standard, now: Date = Date()) throws(EscrowError) -> (
        EscrowEnvelope, SymmetricKey
    ) {
        guard rawKey.count == 32 else { throw EscrowError(.io, "a PBS key is 32 bytes") }
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let key = try wrappingKey(code: code, salt: salt, params: params)
        return (try wrap(rawKey: rawKey, wrappingKey: key, salt: salt, params: params, now: now), key)
    }

    /// The operator-managed tier (SPEC §1 rule 5, the documented exception): wraps a raw PBS key
    /// to the operator escrow public key. A one-time X25519 key pair of the box agrees a secret
    /// with the operator's key; HKDF-SHA256 (salt, info naming both public keys) makes the
    /// wrapping key. Returns the envelope and the wrapping key (the box keeps it for the drill;
    /// the one-time private key is dropped). Only the operator's private key opens it again.
    public static func wrap(rawKey: [UInt8], operatorKey: Curve25519.KeyAgreement.PublicKey, now: Date = Date()) throws(EscrowError) -> (
        EscrowEnvelope, SymmetricKey
    ) {
        guard rawKey.count == 32 else { throw EscrowError(.io, "a PBS key is 32 bytes") }
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let ephemeral = Curve25519.KeyAgreement.PrivateKey()
        let shared: SharedSecret
        do { shared = try ephemeral.sharedSecretFromKeyAgreement(with: operatorKey) } catch {
            throw EscrowError(.badEnvelope, "the operator escrow public key is not usable for X25519")
        }
        let key = x25519WrappingKey(
            shared: shared, salt: salt, ephemeral: ephemeral.publicKey.rawRepresentation, recipient: operatorKey.rawRepresentation)
        var params = KDFParams(n: 0, r: 0, p: 0)
        params.recipient = operatorKey.rawRepresentation.base64EncodedString()
        params.ephemeral = ephemeral.publicKey.rawRepresentation.base64EncodedString()
        return (try wrap(rawKey: rawKey, wrappingKey: key, salt: salt, params: params, kdf: kdfX25519, now: now), key)
    }

    static func x25519WrappingKey(shared: SharedSecret, salt: [UInt8], ephemeral: Data, recipient: Data) -> SymmetricKey {
        shared.hkdfDerivedSymmetricKey(
            using: SHA256.self, salt: salt, sharedInfo: Data("felhom-escrow-v1 x25519".utf8) + ephemeral + recipient, outputByteCount: 32)
    }

    /// Wraps with an already derived key (its `salt` and `params` are recorded).
    public static func wrap(
        rawKey: [UInt8], wrappingKey: SymmetricKey, salt: [UInt8], params: KDFParams, kdf: String = kdfScrypt, now: Date = Date()
    ) throws(EscrowError) -> EscrowEnvelope {
        var env = EscrowEnvelope(
            format: formatV1, kdf: kdf, kdfParams: params, salt: Data(salt).base64EncodedString(), nonce: "", ciphertext: "",
            keyFingerprint: PBSKey.fingerprint(rawKey: rawKey), created: RFC3339.format(now))
        do {
            let box = try AES.GCM.seal(rawKey, using: wrappingKey, authenticating: env.associatedData)
            env.nonce = Data(box.nonce).base64EncodedString()
            env.ciphertext = (box.ciphertext + box.tag).base64EncodedString()
        } catch {
            throw EscrowError(.io, "AES-GCM could not seal the key")
        }
        return env
    }

    /// The bytes bound to the ciphertext: every field but the nonce and the ciphertext itself.
    var associatedData: Data {
        let params =
            kdf == Self.kdfX25519
            ? "\(kdfParams.recipient ?? ""),\(kdfParams.ephemeral ?? "")" : "\(kdfParams.n),\(kdfParams.r),\(kdfParams.p)"
        return Data("\(format)\n\(kdf)\n\(params)\n\(salt)\n\(keyFingerprint)\n\(created)".utf8)
    }

    /// Whether the operator-managed tier made it (wrapped to an operator escrow key).
    public var isOperatorManaged: Bool { kdf == Self.kdfX25519 }

    /// Checks what can be checked without a key: format, KDF, parameter bounds, field sizes.
    public func validate() throws(EscrowError) {
        guard format == Self.formatV1 else { throw EscrowError(.badEnvelope, "unknown envelope format '\(format.prefix(40))'") }
        let p = kdfParams
        switch kdf {
        case Self.kdfScrypt:
            guard p.n >= 1 << 14, p.n <= Limits.maxN, p.n & (p.n - 1) == 0, (1...Limits.maxR).contains(p.r), (1...Limits.maxP).contains(p.p),
                p.recipient == nil, p.ephemeral == nil
            else {
                throw EscrowError(
                    .badEnvelope, "scrypt parameters out of bounds (n a power of two in 2^14…2^20, r 1…\(Limits.maxR), p 1…\(Limits.maxP))")
            }
        case Self.kdfX25519:
            for (name, value) in [("recipient", p.recipient), ("ephemeral", p.ephemeral)] {
                guard let v = value, v.utf8.count <= 64, let raw = Data(base64Encoded: v), raw.count == 32 else {
                    throw EscrowError(.badEnvelope, "kdf_params.\(name) must be a base64 X25519 public key (32 bytes)")
                }
            }
            guard p.n == 0, p.r == 0, p.p == 0 else { throw EscrowError(.badEnvelope, "x25519 takes no scrypt parameters") }
        default:
            throw EscrowError(.badEnvelope, "unknown KDF '\(kdf.prefix(40))'")
        }
        guard let s = Data(base64Encoded: salt), s.count >= 16, s.count <= 64 else { throw EscrowError(.badEnvelope, "salt must be 16–64 bytes") }
        guard let n = Data(base64Encoded: nonce), n.count == 12 else { throw EscrowError(.badEnvelope, "nonce must be 12 bytes") }
        guard let c = Data(base64Encoded: ciphertext), c.count == 48 else {
            throw EscrowError(.badEnvelope, "ciphertext must be a sealed 32-byte key (48 bytes)")
        }
        guard PBSKey.normalized(keyFingerprint).count == 95 else { throw EscrowError(.badEnvelope, "key_fingerprint must be 32 bytes of hex") }
    }

    /// The wrapping key for this envelope's salt and parameters (after ``validate()``).
    public func wrappingKey(code: RecoveryCode) throws(EscrowError) -> SymmetricKey {
        try validate()
        guard kdf == Self.kdfScrypt else {
            throw EscrowError(
                .wrongTier, "this box's key is escrowed on the operator-managed tier: it opens with the operator escrow key, not a recovery code")
        }
        return try Self.wrappingKey(code: code, salt: Array(Data(base64Encoded: salt) ?? Data()), params: kdfParams)
    }

    /// The wrapping key for an operator-managed envelope, from the operator escrow private key.
    public func wrappingKey(operatorKey: Curve25519.KeyAgreement.PrivateKey) throws(EscrowError) -> SymmetricKey {
        try validate()
        guard kdf == Self.kdfX25519 else {
            throw EscrowError(.wrongTier, "this box's key is escrowed under the customer's recovery code, not an operator escrow key")
        }
        let recipient = Data(base64Encoded: kdfParams.recipient ?? "") ?? Data()
        guard recipient == operatorKey.publicKey.rawRepresentation else {
            throw EscrowError(
                .unwrapFailed,
                "the envelope is wrapped to operator escrow key \(OperatorEscrowKey.fingerprint(recipient)), not to \(OperatorEscrowKey.fingerprint(operatorKey.publicKey.rawRepresentation))"
            )
        }
        let ephemeralRaw = Data(base64Encoded: kdfParams.ephemeral ?? "") ?? Data()
        do {
            let ephemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: ephemeralRaw)
            let shared = try operatorKey.sharedSecretFromKeyAgreement(with: ephemeral)
            return Self.x25519WrappingKey(
                shared: shared, salt: Array(Data(base64Encoded: salt) ?? Data()), ephemeral: ephemeralRaw, recipient: recipient)
        } catch {
            throw EscrowError(.badEnvelope, "kdf_params.ephemeral is not a usable X25519 public key")
        }
    }

    /// Opens the envelope: the raw key, checked against the fingerprint the envelope names. A wrong
    /// key (code) and an altered envelope fail the same way: `unwrap_failed`.
    public func unwrap(with wrappingKey: SymmetricKey) throws(EscrowError) -> [UInt8] {
        try validate()
        let sealed = Data(base64Encoded: ciphertext) ?? Data()
        let raw: Data
        do {
            let box = try AES.GCM.SealedBox(
                nonce: try AES.GCM.Nonce(data: Data(base64Encoded: nonce) ?? Data()), ciphertext: sealed.prefix(32), tag: sealed.suffix(16))
            raw = try AES.GCM.open(box, using: wrappingKey, authenticating: associatedData)
        } catch {
            throw EscrowError(
                .unwrapFailed,
                isOperatorManaged
                    ? "the envelope does not open with this operator escrow key (the envelope was altered)"
                    : "the envelope does not open with this recovery code (wrong code, or the envelope was altered)")
        }
        guard PBSKey.fingerprint(rawKey: Array(raw)) == PBSKey.normalized(keyFingerprint) else {
            throw EscrowError(.fingerprintMismatch, "the unwrapped key does not have the fingerprint the envelope names")
        }
        return Array(raw)
    }

    /// Opens with the recovery code.
    public func unwrap(code: RecoveryCode) throws(EscrowError) -> [UInt8] {
        try unwrap(with: try wrappingKey(code: code))
    }

    /// The envelope as stored and sent (sorted keys).
    public func encoded() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return (try? enc.encode(self)) ?? Data()
    }

    /// Reads an envelope (at most 8 KiB), then ``validate()``.
    public static func decode(_ data: Data) throws(EscrowError) -> EscrowEnvelope {
        guard data.count <= 8192, let env = try? JSONDecoder().decode(EscrowEnvelope.self, from: data) else {
            throw EscrowError(.badEnvelope, "not an escrow envelope (JSON with format, kdf, kdf_params, salt, nonce, ciphertext, key_fingerprint)")
        }
        try env.validate()
        return env
    }
}

extension PBSKey {
    /// A new key file (`--kdf none`, as PVE keeps it): 32 random bytes; returns the file's JSON and
    /// the raw key. `created`/`modified` are RFC 3339.
    public static func generate(now: Date = Date()) -> (json: Data, rawKey: [UInt8]) {
        var rng = SystemRandomNumberGenerator()
        let raw = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return (keyFileJSON(rawKey: raw, now: now), raw)
    }

    /// The key file JSON of a raw key (`kdf: null`, `data`, `fingerprint`).
    public static func keyFileJSON(rawKey: [UInt8], now: Date = Date()) -> Data {
        let at = RFC3339.format(now)
        let text =
            #"{"kdf":null,"created":"\#(at)","modified":"\#(at)","data":"\#(Data(rawKey).base64EncodedString())","fingerprint":"\#(fingerprint(rawKey: rawKey))"}"#
        return Data(text.utf8)
    }

    /// The raw key of a key file (`kdf: null` only).
    public static func rawKey(json: Data) throws(BackupError) -> [UInt8] {
        _ = try PBSKey(json: json)  // validates shape and fingerprint
        guard let doc = try? JSONValue.parse(json), let text = doc["data"]?.stringValue, let raw = Data(base64Encoded: text) else {
            throw BackupError(.keyUnreadable, "the PBS key file's data is not a base64 32-byte key")
        }
        return Array(raw)
    }
}
