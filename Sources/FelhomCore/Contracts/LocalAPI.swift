import Foundation

/// One backup run as the agent's local API reports it (SPEC §4): `POST /backup` answers 202 with
/// `{"id", "status": "running"}`; `GET /backup/status?id=ID` with `{"id", "status", "volid"?,
/// "reason"?}`; without `id`, the latest run or `{"status": "idle"}`. The agent's server and the
/// controller's client share this type. `POST /rollback` and `GET /rollback/status?id=ID` answer
/// with the same shape.
public struct BackupRun: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable { case running, done, failed, idle }
    public var id: String?
    public var status: Status
    public var volid: String?
    public var reason: String?
    public init(id: String?, status: Status, volid: String? = nil, reason: String? = nil) {
        self.id = id
        self.status = status
        self.volid = volid
        self.reason = reason
    }
}

/// `POST /rollback` of the local API: an operator-signed `guest.rollback` op for the caller's own
/// guest, as `felhom sign` made it: the blob's exact bytes (UTF-8 JSON text) and the armored
/// SSHSIG signature.
public struct RollbackRequest: Sendable, Equatable, Codable {
    public var blob: String
    public var signature: String
    public init(blob: String, signature: String) {
        self.blob = blob
        self.signature = signature
    }
}
