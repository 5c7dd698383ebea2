import FelhomCore

/// Where and how to reach one Proxmox VE API: `https://HOST:PORT/api2/json` with an API token.
public struct PVEConnection: Sendable {
    public var host: String
    public var port: Int
    /// `USER@REALM!TOKENID`, e.g. `felhom@pve!agent`.
    public var tokenID: String
    public var tokenSecret: Secret
    public var trust: TLSTrust
    /// Plain HTTP, only for debugging against `felhom pve-sim --plain-http`.
    public var useTLS: Bool
    public var requestTimeout: Duration

    public init(
        host: String, port: Int = 8006, tokenID: String, tokenSecret: Secret, trust: TLSTrust,
        useTLS: Bool = true, requestTimeout: Duration = .seconds(60)
    ) throws {
        guard Self.isValidTokenID(tokenID) else {
            throw PVEError(
                code: .invalidArgument,
                message: "token id '\(tokenID)' must look like USER@REALM!TOKENNAME (e.g. felhom@pve!agent)")
        }
        guard !tokenSecret.isEmpty else {
            throw PVEError(code: .invalidArgument, message: "the token secret for '\(tokenID)' is empty")
        }
        self.host = host
        self.port = port
        self.tokenID = tokenID
        self.tokenSecret = tokenSecret
        self.trust = trust
        self.useTLS = useTLS
        self.requestTimeout = requestTimeout
    }

    /// The API base, for messages (`https://pve1:8006/api2/json`).
    public var baseURL: String { "\(useTLS ? "https" : "http")://\(host):\(port)/api2/json" }

    /// The `Authorization` header value. Contains the secret: never log it.
    var authorizationHeader: String { "PVEAPIToken=\(tokenID)=\(tokenSecret.reveal())" }

    /// `user@realm!name` with name matching `[A-Za-z][A-Za-z0-9.\-_]+` (pve-access-control).
    static func isValidTokenID(_ id: String) -> Bool {
        let parts = id.split(separator: "!", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].contains("@"), let first = parts[1].first, first.isLetter, first.isASCII,
            parts[1].count >= 2
        else { return false }
        return parts[1].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }
}
