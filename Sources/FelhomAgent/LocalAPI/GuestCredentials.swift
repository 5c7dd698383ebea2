import FelhomCore
import Foundation
import Proxmox

/// Hands a new guest's controller its credentials at provision (issue 14): the hub key the hub
/// issued for the guest, and a local API token issued here, written as `/etc/felhom/controller.json`
/// (root 0600) into the guest through the fenced `pct push`. The file is staged in
/// `state_dir/push/` (0600) and removed after the push; credentials never pass through the hub.
public struct GuestCredentials: Sendable {
    public var hubURL: String
    public var hubFingerprint: String?
    public var agentURL: String
    public var agentFingerprint: String
    let tokens: LocalTokens
    let backend: PrivilegedBackend
    let stagingDir: String

    public init(
        hubURL: String, hubFingerprint: String?, agentURL: String, agentFingerprint: String, tokens: LocalTokens, backend: PrivilegedBackend,
        stagingDir: String
    ) {
        self.hubURL = hubURL
        self.hubFingerprint = hubFingerprint
        self.agentURL = agentURL
        self.agentFingerprint = agentFingerprint
        self.tokens = tokens
        self.backend = backend
        self.stagingDir = stagingDir
    }

    /// The controller config for a guest (the controller's own key names).
    public func document(guestID: String, hubKey: Secret, agentToken: Secret) -> [UInt8] {
        var hub: [String: JSONValue] = ["url": .string(hubURL), "key": .string(hubKey.reveal()), "guest_id": .string(guestID)]
        if let fp = hubFingerprint { hub["fingerprint"] = .string(fp) }
        let doc: JSONValue = .object([
            "hub": .object(hub),
            "agent": .object(["url": .string(agentURL), "fingerprint": .string(agentFingerprint), "token": .string(agentToken.reveal())]),
        ])
        return Array(doc.serialized()) + [0x0A]
    }

    /// Issues the guest's local API token and pushes its controller config into the guest.
    public func install(vmid: Int, guestID: String, hubKey: Secret) async throws {
        let token = try tokens.issue(vmid: vmid)
        try FileManager.default.createDirectory(atPath: stagingDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let staged = stagingDir + "/controller-\(vmid).json"
        defer { unlink(staged) }
        try DurableFile.write(document(guestID: guestID, hubKey: hubKey, agentToken: token), to: staged, mode: 0o600)
        try await backend.push(vmid: vmid, source: staged, destination: "/etc/felhom/controller.json")
    }
}
