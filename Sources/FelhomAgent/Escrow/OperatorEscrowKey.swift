import Crypto
import Foundation

/// The operator escrow key of the operator-managed tier (SPEC §1 rule 5, the documented
/// exception to zero knowledge): an X25519 key pair the operator makes once (`felhom escrow-key
/// generate`) and keeps offline. Boxes on that tier (`escrow.operator_public_key`) wrap their PBS
/// key to its public half; `felhom-agent recover --operator-key FILE` opens the hub's copy with
/// the private half. The hub never holds either.
///
/// Text forms (one line each): the public key `felhom-escrow-x25519 BASE64` (32 bytes), the
/// private key file `felhom-escrow-x25519-private BASE64` (32 bytes, mode 0600). Fingerprints are
/// `SHA256:` and the unpadded base64 of the public key's SHA-256, as OpenSSH prints them.
public enum OperatorEscrowKey {
    public static let publicPrefix = "felhom-escrow-x25519"
    public static let privatePrefix = "felhom-escrow-x25519-private"

    /// Reads a public key line (`felhom-escrow-x25519 BASE64`, an optional comment after it).
    public static func parsePublic(_ line: String) throws(EscrowError) -> Curve25519.KeyAgreement.PublicKey {
        let fields = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, fields[0] == publicPrefix, fields[1].utf8.count <= 64, let raw = Data(base64Encoded: String(fields[1])),
            raw.count == 32, let key = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: raw)
        else {
            throw EscrowError(
                .badOperatorKey, "an operator escrow public key is '\(publicPrefix) BASE64' (32 bytes), as `felhom escrow-key generate` prints it")
        }
        return key
    }

    /// Reads a private key file's text. The message never quotes the text (it is a secret).
    public static func parsePrivate(_ text: String) throws(EscrowError) -> Curve25519.KeyAgreement.PrivateKey {
        let fields = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 2, fields[0] == privatePrefix, fields[1].utf8.count <= 64, let raw = Data(base64Encoded: String(fields[1])),
            raw.count == 32, let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw)
        else {
            throw EscrowError(
                .badOperatorKey, "not an operator escrow private key file ('\(privatePrefix) BASE64', made by `felhom escrow-key generate`)")
        }
        return key
    }

    /// The public key's line.
    public static func publicLine(_ key: Curve25519.KeyAgreement.PublicKey) -> String {
        "\(publicPrefix) \(key.rawRepresentation.base64EncodedString())"
    }

    /// The private key file's text (ends with a newline).
    public static func privateText(_ key: Curve25519.KeyAgreement.PrivateKey) -> String {
        "\(privatePrefix) \(key.rawRepresentation.base64EncodedString())\n"
    }

    /// `SHA256:…` of a raw public key.
    public static func fingerprint(_ raw: Data) -> String {
        "SHA256:" + Data(SHA256.hash(data: raw)).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }
}
