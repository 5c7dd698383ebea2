import Foundation

/// A Proxmox task id, parsed exactly as pve-common's `PVE::UPID` does.
///
/// Format: `UPID:node:PID:PSTART:STARTTIME:type:id:user:` with `PID` and `STARTTIME` as 8 hex
/// digits, `PSTART` as 8 or 9 (it passes 32 bits after ~497 days of uptime), `id` possibly empty
/// and `user` either `user@realm` or a token id `user@realm!token`. The string keeps its trailing
/// colon. Always poll a task on the UPID's own `node`.
public struct UPID: Sendable, Hashable, CustomStringConvertible, Codable {
    public let node: String
    public let pid: UInt32
    public let pstart: UInt64
    public let starttime: UInt32
    public let type: String
    public let id: String
    public let user: String

    /// The exact wire form, as PVE prints it.
    public var description: String {
        "UPID:\(node):\(Self.hex(UInt64(pid), 8)):\(Self.hex(pstart, 8)):\(Self.hex(UInt64(starttime), 8)):\(type):\(id):\(user):"
    }

    /// The task's start time.
    public var startDate: Date { Date(timeIntervalSince1970: TimeInterval(starttime)) }

    /// The token name when the task was started with an API token (`user@realm!token`).
    public var tokenID: String? {
        guard let bang = user.firstIndex(of: "!") else { return nil }
        return String(user[user.index(after: bang)...])
    }

    /// The user part without the token name.
    public var userID: String {
        guard let bang = user.firstIndex(of: "!") else { return user }
        return String(user[..<bang])
    }

    public init(node: String, pid: UInt32, pstart: UInt64, starttime: UInt32, type: String, id: String, user: String) {
        self.node = node
        self.pid = pid
        self.pstart = pstart
        self.starttime = starttime
        self.type = type
        self.id = id
        self.user = user
    }

    /// Parses `text`; throws ``PVEError`` with code `.invalidUPID` naming the bad field.
    public init(parsing text: String) throws {
        func bad(_ why: String) -> PVEError {
            PVEError(code: .invalidUPID, message: "invalid UPID '\(text)': \(why)")
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 9, parts[0] == "UPID", parts[8].isEmpty else {
            throw bad("expected 'UPID:node:pid:pstart:starttime:type:id:user:'")
        }
        let node = parts[1]
        guard Self.isNodeName(node) else { throw bad("node name") }
        guard parts[2].count == 8, let pid = UInt32(parts[2], radix: 16), Self.isHex(parts[2]) else {
            throw bad("pid must be 8 hex digits")
        }
        guard parts[3].count == 8 || parts[3].count == 9, Self.isHex(parts[3]), let pstart = UInt64(parts[3], radix: 16)
        else { throw bad("pstart must be 8 or 9 hex digits") }
        guard parts[4].count == 8, Self.isHex(parts[4]), let start = UInt32(parts[4], radix: 16) else {
            throw bad("starttime must be 8 hex digits")
        }
        let type = parts[5]
        let id = parts[6]
        let user = parts[7]
        guard !type.isEmpty, Self.isField(type) else { throw bad("task type") }
        guard Self.isField(id) else { throw bad("task id") }
        guard !user.isEmpty, Self.isField(user) else { throw bad("user") }
        self.init(node: node, pid: pid, pstart: pstart, starttime: start, type: type, id: id, user: user)
    }

    public init(from decoder: Decoder) throws {
        try self.init(parsing: decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    private static func hex(_ v: UInt64, _ width: Int) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func isHex(_ s: String) -> Bool { s.allSatisfy { $0.isHexDigit && $0.isASCII } }

    /// `[^:\s/]*`
    private static func isField(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0 != ":" && $0 != "/" && !CharacterSet.whitespacesAndNewlines.contains($0) }
    }

    /// `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`
    private static func isNodeName(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, let l = s.unicodeScalars.last else { return false }
        let alnum = { (c: Unicode.Scalar) in c.isASCII && (CharacterSet.alphanumerics.contains(c)) }
        return alnum(f) && alnum(l) && s.unicodeScalars.allSatisfy { alnum($0) || $0 == "-" }
    }
}
