import FelhomCore
import FelhomHTTP
import Foundation

/// Where the local API keeps its files in `state_dir`: the token digests and the agent's own
/// certificate (`local-api/cert.pem`, `local-api/key.pem` 0600), made on first use and kept, so
/// the fingerprint the controllers pin stays the same across restarts.
public enum LocalAPIFiles {
    public static func tokens(stateDir: String) throws(LocalAPIError) -> LocalTokens {
        try LocalTokens(path: stateDir + "/local-api-tokens.json")
    }

    /// The certificate: read if present, else created (P-256, self-signed, valid ten years for
    /// `names` and loopback).
    public static func certificate(stateDir: String, names: [String]) throws -> TLSMaterial {
        let dir = stateDir + "/local-api"
        let certPath = dir + "/cert.pem"
        let keyPath = dir + "/key.pem"
        if let cert = try? String(contentsOfFile: certPath, encoding: .utf8), let key = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            return try TLSMaterial(certificatePEM: cert, privateKeyPEM: key)
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let material = try TLSMaterial.selfSigned(commonName: "felhom-agent", names: names)
        // The key first: a crash between the two leaves no certificate without its key.
        try DurableFile.write(Array(material.privateKeyPEM.utf8), to: keyPath, mode: 0o600)
        try DurableFile.write(Array(material.certificatePEM.utf8), to: certPath, mode: 0o644)
        return material
    }
}
