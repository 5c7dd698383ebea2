import FelhomCore
import Foundation

/// Everything that can go wrong talking to Proxmox VE, as one error type with a stable code.
///
/// The message is what Proxmox said (its status line or its `message` field), never a token or
/// other secret. Extra fields carry what callers act on: the missing privilege and path of a 403,
/// per-parameter messages of a 400, the lock of a locked guest, the exit status and log tail of a
/// failed task.
public struct PVEError: Error, Sendable, CustomStringConvertible {
    /// A stable error code; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let raw: String
        private init(_ raw: String) { self.raw = raw }
        public var description: String { raw }

        /// 401: the token is unknown, expired or its secret is wrong.
        public static let unauthorized = Code("unauthorized")
        /// 403: a privilege is missing on a path (`privilege`, `path`).
        public static let forbidden = Code("forbidden")
        /// 400: parameter verification failed (`parameterErrors`).
        public static let badRequest = Code("badRequest")
        /// 500 `Configuration file ... does not exist` and similar.
        public static let notFound = Code("notFound")
        /// 500 `CT is locked (backup)` (`lock`), synchronously or as a task's exit status.
        public static let locked = Code("locked")
        /// 500 `detected modified configuration - file changed by other user? Try again.`
        public static let digestMismatch = Code("digestMismatch")
        /// Any other 5xx answer from the API.
        public static let server = Code("server")
        /// 595-599: pveproxy could not reach the daemon or node (connection, timeout, TLS on the proxy hop).
        public static let proxy = Code("proxy")
        /// 501: the method or path does not exist on this server.
        public static let notImplemented = Code("notImplemented")
        /// The connection could not be made or broke.
        public static let transport = Code("transport")
        /// The server's certificate did not match the pin or the trusted CA.
        public static let tls = Code("tls")
        /// The answer did not have the expected shape.
        public static let decoding = Code("decoding")
        /// A task stopped with an exit status other than `OK` or `WARNINGS: n` (`exitStatus`, `logTail`).
        public static let taskFailed = Code("taskFailed")
        /// Waiting (for a task or an answer) took longer than allowed.
        public static let timeout = Code("timeout")
        /// A UPID string did not parse.
        public static let invalidUPID = Code("invalidUPID")
        /// The caller passed a value the client refuses to send.
        public static let invalidArgument = Code("invalidArgument")
    }

    public var code: Code
    public var message: String
    /// The HTTP status, when the error came from an HTTP answer.
    public var httpStatus: Int?
    /// For 403 `Permission check failed (PATH, PRIV)`: the path.
    public var path: String?
    /// For 403: the privilege (or `A|B` alternatives) that was missing.
    public var privilege: String?
    /// For 400: parameter name → message.
    public var parameterErrors: [String: String]
    /// For `.locked`: the lock name (`backup`, `create`, ...).
    public var lock: String?
    /// For `.taskFailed`: the task's exit status text.
    public var exitStatus: String?
    /// For `.taskFailed`: the last lines of the task log.
    public var logTail: [String]
    /// For task errors: the task.
    public var upid: UPID?
    /// What the client was doing (`GET /nodes/pve1/lxc`), for context.
    public var request: String?

    public init(
        code: Code, message: String, httpStatus: Int? = nil, path: String? = nil, privilege: String? = nil,
        parameterErrors: [String: String] = [:], lock: String? = nil, exitStatus: String? = nil,
        logTail: [String] = [], upid: UPID? = nil, request: String? = nil
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.path = path
        self.privilege = privilege
        self.parameterErrors = parameterErrors
        self.lock = lock
        self.exitStatus = exitStatus
        self.logTail = logTail
        self.upid = upid
        self.request = request
    }

    public var description: String {
        var s = "PVE error \(code)"
        if let httpStatus { s += " (HTTP \(httpStatus))" }
        if let request { s += " on \(request)" }
        s += ": \(message)"
        if !parameterErrors.isEmpty {
            s += " [" + parameterErrors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ") + "]"
        }
        if code == .taskFailed, let last = logTail.last { s += " (log: \(last))" }
        return s
    }

    /// Builds the typed error for a non-2xx answer.
    ///
    /// Proxmox puts the message in the status line (`HTTP/1.1 500 CT is locked (disk)`) and, since
    /// libpve-http-server-perl 5.2.0, also in the body's `message` field; both are understood. The
    /// body may also be plain text (transport-level errors) or empty.
    public static func fromResponse(status: Int, reason: String, body: Data, request: String? = nil) -> PVEError {
        var message = reason
        var params: [String: String] = [:]
        if let json = try? JSONValue.parse(body), case .object(let o) = json {
            if let m = o["message"]?.stringValue, !m.isEmpty { message = m }
            if let errs = o["errors"]?.objectValue {
                for (k, v) in errs { params[k] = v.stringValue ?? v.serializedString() }
            }
        } else if !body.isEmpty, let text = String(data: body, encoding: .utf8), reason.isEmpty {
            message = text
        }
        message = message.trimmingCharacters(in: .whitespacesAndNewlines)
        if message.isEmpty { message = "HTTP \(status)" }
        var err = PVEError(code: .server, message: message, httpStatus: status, parameterErrors: params, request: request)
        switch status {
        case 401: err.code = .unauthorized
        case 403:
            err.code = .forbidden
            if let (path, priv) = parsePermissionFailure(message) {
                err.path = path
                err.privilege = priv
            }
        case 400: err.code = .badRequest
        case 501: err.code = .notImplemented
        case 595...599: err.code = .proxy
        case 500...594:
            classify(&err)
        default: break
        }
        return err
    }

    /// Parses `Permission check failed (/vms/100, VM.Allocate)` into path and privilege.
    static func parsePermissionFailure(_ message: String) -> (String, String)? {
        guard let open = message.range(of: "Permission check failed ("), message.hasSuffix(")") else { return nil }
        let inner = message[open.upperBound..<message.index(before: message.endIndex)]
        guard let comma = inner.range(of: ", ") else { return nil }
        return (String(inner[..<comma.lowerBound]), String(inner[comma.upperBound...]))
    }

    /// Refines a 500 (or a task exit status) into locked / digest mismatch / not found.
    static func classify(_ err: inout PVEError) {
        let m = err.message
        for prefix in ["CT is locked (", "VM is locked ("] {
            if let r = m.range(of: prefix), let close = m[r.upperBound...].firstIndex(of: ")") {
                err.code = .locked
                err.lock = String(m[r.upperBound..<close])
                return
            }
        }
        if m.contains("detected modified configuration") {
            err.code = .digestMismatch
        } else if m.contains("does not exist") || m.contains("no such") {
            err.code = .notFound
        }
    }
}

extension PVEError {
    /// The Proxmox view of a failure below HTTP (connection, TLS, timeout, bad client setting).
    public init(transport e: HTTPClientError) {
        let code: Code =
            switch e.code {
            case .tls: .tls
            case .timeout: .timeout
            case .invalidArgument: .invalidArgument
            default: .transport
            }
        self.init(code: code, message: e.message, request: e.request)
    }
}
