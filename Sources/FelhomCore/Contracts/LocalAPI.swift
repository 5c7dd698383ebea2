import Foundation

/// One backup run as the agent's local API reports it (SPEC §4): `POST /backup` answers 202 with
/// `{"id", "status": "running"}`; `GET /backup/status?id=ID` with `{"id", "status", "volid"?,
/// "reason"?}`; without `id`, the latest run or `{"status": "idle"}`. The agent's server and the
/// controller's client share this type.
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
