import FelhomCore
import Foundation

/// The box's check of a release manifest (SPEC §4 "Self-update"), in the order the op verifier
/// uses: armor → namespace `felhom-release-v1` → pinned release key (allow-list by key bytes,
/// its `namespaces` option and validity) → signature over the raw received bytes → only then a
/// strict parse → the component and version the box asked for. Anything else is refused with a
/// ``SignatureError`` naming what failed; the hub's words are never trusted.
public struct ReleaseVerifier: Sendable {
    public let signers: [PinnedSigner]
    public let clock: WallClock

    public init(signers: [PinnedSigner], clock: WallClock = SystemWallClock()) {
        self.signers = signers
        self.clock = clock
    }

    /// The verified manifest and who signed it.
    public struct Verified: Sendable {
        public var manifest: ReleaseManifest
        public var signer: PinnedSigner
    }

    public func verify(
        manifest bytes: [UInt8], signature armored: String, component: ReleaseManifest.Component, version: String
    ) throws(SignatureError) -> Verified {
        let sig = try SSHSignature(armored: armored)
        guard sig.namespace == ReleaseManifest.namespace else {
            throw SignatureError(.namespace, "signature is for namespace '\(sig.namespace)', not '\(ReleaseManifest.namespace)'")
        }
        let signer = try PinnedSigner.match(sig, in: signers, namespace: ReleaseManifest.namespace, now: clock.now())
        try sig.verify(message: bytes)
        let manifest: ReleaseManifest
        do { manifest = try ReleaseManifest(parsing: bytes) } catch { throw SignatureError(.malformed, error.description) }
        guard manifest.component == component else {
            throw SignatureError(.target, "the manifest is for the \(manifest.component.rawValue), not the \(component.rawValue)")
        }
        guard manifest.version == version else {
            throw SignatureError(.target, "the manifest is for version \(manifest.version), not \(version)")
        }
        return Verified(manifest: manifest, signer: signer)
    }
}
